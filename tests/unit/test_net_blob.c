/*
 * test_net_blob.c -- what the blob reader believes about a server's
 * answers: Content-Range, the SAS expiry, Get Page Ranges
 * XML (well-formed, split anywhere, continued with NextMarker, malformed
 * or hostile), and Storage error bodies.  Each case is a way a reply
 * could make a disk read wrong if it were trusted blindly.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blob.h"
#include "check.h"

static void test_content_range_exact_or_rejected(void)
{
	long long s, e, t;

	CHECK_INT(blob_parse_content_range("bytes 0-511/1024", &s, &e, &t), 0);
	CHECK_INT(s, 0);
	CHECK_INT(e, 511);
	CHECK_INT(t, 1024);
	CHECK_INT(blob_parse_content_range("bytes 4194304-8388607/34359738880",
					   &s, &e, &t),
		  0);
	CHECK_INT(s, 4194304);
	CHECK_INT(t, 34359738880LL);
	CHECK_INT(blob_parse_content_range("  bytes 1-1/*\r\n", &s, &e, &t), 0);
	CHECK_INT(t, -1);
	/* everything a broken proxy or server might send */
	const char *bad[] = {
	    "",
	    "bytes",
	    "bytes 0-511",
	    "bytes 0-511/",
	    "bytes 512-511/1024",	      /* inverted */
	    "bytes 0-1024/1024",	      /* end past total */
	    "bytes -5-10/100",		      /* negative */
	    "bytes 0x10-20/100",	      /* not decimal */
	    "bytes 0-511/1024 junk",	      /* trailing garbage */
	    "items 0-511/1024",		      /* wrong unit */
	    "bytes 99999999999999999999-1/2", /* overflow */
	    "bytes */1024",		      /* unsatisfied-range form */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = blob_parse_content_range(bad[i], &s, &e, &t);

		CHECK_INT(rc, -EINVAL);
		if (rc != -EINVAL)
			fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
	}
	CHECK_INT(blob_parse_content_range(NULL, &s, &e, &t), -EINVAL);
}

static void test_sas_expiry_is_read_from_se(void)
{
	time_t t = 0;

	CHECK_INT(blob_sas_expiry("https://md-x.blob.core.windows.net/c/abcd?"
				  "sv=2018-03-28&sr=b&st=2024-01-01T00%3A00%"
				  "3A00Z&se=2024-01-01T01%3A00%3A00Z&sp=r&sig="
				  "abc%2Bdef",
				  &t),
		  0);
	CHECK_INT(t, 1704070800);
	CHECK_INT(
	    blob_sas_expiry("https://h/b?se=2024-01-01T01:00:00.1234567Z", &t),
	    0);
	CHECK_INT(t, 1704070800);
	CHECK_INT(blob_sas_expiry("https://h/b?sig=x&se=2024-02-29", &t), 0);
	CHECK_INT(t, 1709164800);
	CHECK_INT(blob_sas_expiry("https://h/b?se=2024-01-01T01:00Z", &t), 0);
	CHECK_INT(t, 1704070800);
	/* no se (older SAS use si=): the caller falls back to the duration */
	CHECK_INT(blob_sas_expiry("https://h/b?sv=1&si=policy&sig=x", &t),
		  -ENOENT);
	CHECK_INT(blob_sas_expiry("https://h/b", &t), -ENOENT);
	/* "sse=" is another parameter, not se */
	CHECK_INT(blob_sas_expiry("https://h/b?sse=2024-01-01", &t), -ENOENT);
	CHECK_INT(blob_sas_expiry("https://h/b?se=tomorrow", &t), -EINVAL);
	CHECK_INT(blob_sas_expiry("https://h/b?se=2024-13-01T00:00:00Z", &t),
		  -EINVAL);
	CHECK_INT(blob_sas_expiry("https://h/b?se=2024-01-01%00T00:00Z", &t),
		  -EINVAL);
}

/* Collects ranges for the page-list tests. */
struct got {
	long long r[64][2];
	int n;
	int fail_at; /* return -EINTR on this call (1-based), 0: never */
};

static int collect(void *arg, long long s, long long e)
{
	struct got *g = arg;

	if (g->fail_at && g->n + 1 == g->fail_at)
		return -EINTR;
	if (g->n < 64) {
		g->r[g->n][0] = s;
		g->r[g->n][1] = e;
	}
	g->n++;
	return 0;
}

static int parse_all(const char *xml, long long ws, long long we, struct got *g,
		     char **marker)
{
	struct blob_pl_parser *p = blob_pl_parser_new(ws, we, collect, g);
	int rc;

	if (!p)
		return -ENOMEM;
	rc = blob_pl_parser_feed(p, xml, strlen(xml), true);
	if (marker)
		*marker = blob_pl_parser_marker(p)
			      ? strdup(blob_pl_parser_marker(p))
			      : NULL;
	blob_pl_parser_free(p);
	return rc;
}

static const char PL[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PageList>"
    "<PageRange><Start>0</Start><End>511</End></PageRange>"
    "<PageRange>\n  <Start> 1048576 </Start>\n  <End>2097151</End>\n"
    "</PageRange>"
    "<ClearRange><Start>4096</Start><End>8191</End></ClearRange>"
    "<PageRange><Start>1073741824</Start><End>1073742335</End></PageRange>"
    "</PageList>";

static void test_page_list_ranges_become_half_open(void)
{
	struct got g = {0};
	char *m = (char *)"x";

	CHECK_INT(parse_all(PL, 0, 1073742336, &g, &m), 0);
	CHECK_INT(g.n, 3);
	CHECK_INT(g.r[0][0], 0);
	CHECK_INT(g.r[0][1], 512);
	CHECK_INT(g.r[1][0], 1048576);
	CHECK_INT(g.r[1][1], 2097152);
	CHECK_INT(g.r[2][0], 1073741824);
	CHECK_INT(g.r[2][1], 1073742336);
	CHECK_NULL(m);
}

static void test_page_list_split_at_every_byte(void)
{
	size_t n = strlen(PL);
	int bad = 0;

	for (size_t cut = 0; cut <= n; cut++) {
		struct got g = {0};
		struct blob_pl_parser *p =
		    blob_pl_parser_new(0, 1LL << 40, collect, &g);

		if (blob_pl_parser_feed(p, PL, cut, false) ||
		    blob_pl_parser_feed(p, PL + cut, n - cut, true) ||
		    g.n != 3 || g.r[1][0] != 1048576)
			bad++;
		blob_pl_parser_free(p);
	}
	CHECK_INT(bad, 0);
}

static void test_page_list_clipped_to_the_window(void)
{
	struct got g = {0};

	/* a server may return ranges that straddle the x-ms-range window */
	CHECK_INT(parse_all(PL, 1024, 1048576 + 4096, &g, NULL), 0);
	CHECK_INT(g.n, 1);
	CHECK_INT(g.r[0][0], 1048576);
	CHECK_INT(g.r[0][1], 1048576 + 4096);
}

static void test_page_list_next_marker_is_kept(void)
{
	struct got g = {0};
	char *m = NULL;

	CHECK_INT(parse_all("<PageList><PageRange><Start>0</Start><End>4095"
			    "</End></PageRange><NextMarker>2!84!MDAwMDE4IWJs"
			    "b2I=</NextMarker></PageList>",
			    0, 1 << 20, &g, &m),
		  0);
	CHECK_INT(g.n, 1);
	CHECK_STR(m, "2!84!MDAwMDE4IWJsb2I=");
	free(m);
	m = (char *)"x";
	CHECK_INT(
	    parse_all("<PageList><NextMarker/></PageList>", 0, 1 << 20, &g, &m),
	    0);
	CHECK_NULL(m); /* empty marker: the list is complete */
	CHECK_INT(parse_all("<PageList/>", 0, 1 << 20, &g, NULL), 0);
}

static void test_malformed_page_lists_are_refused(void)
{
	const char *bad[] = {
	    "",
	    "<PageList>", /* truncated */
	    "<PageList><PageRange><Start>0</Start><End>511</End>", /* cut */
	    "<Error><Code>AuthenticationFailed</Code></Error>", /* not a list */
	    "<PageList><PageRange><Start>0</Start></PageRange></PageList>",
	    "<PageList><PageRange><Start>x</Start><End>511</End></PageRange>"
	    "</PageList>",
	    "<PageList><PageRange><Start>-512</Start><End>511</End>"
	    "</PageRange></PageList>",
	    /* not 512-aligned */
	    "<PageList><PageRange><Start>100</Start><End>611</End>"
	    "</PageRange></PageList>",
	    /* inverted */
	    "<PageList><PageRange><Start>1024</Start><End>511</End>"
	    "</PageRange></PageList>",
	    /* out of order, overlapping */
	    "<PageList><PageRange><Start>1024</Start><End>2047</End>"
	    "</PageRange><PageRange><Start>512</Start><End>1535</End>"
	    "</PageRange></PageList>",
	    /* entity expansion ("billion laughs") must never run */
	    "<?xml version=\"1.0\"?><!DOCTYPE PageList [<!ENTITY a \"aaaa\">"
	    "<!ENTITY b \"&a;&a;&a;&a;\">]><PageList><NextMarker>&b;"
	    "</NextMarker></PageList>",
	    "<PageList><PageRange><Start><x>0</x></Start></PageRange>"
	    "</PageList>",
	    "<PageList></PageList><PageList></PageList>",
	    "{\"value\": [{\"id\": \"/subscri",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct got g = {0};
		int rc = parse_all(bad[i], 0, 1LL << 40, &g, NULL);

		CHECK_INT(rc, -EIO);
		if (rc != -EIO)
			fprintf(stderr, "  accepted case %zu\n", i);
	}
	/* overlong text is refused, not buffered without bound */
	size_t big = 1 << 20;
	char *x = malloc(big + 64);

	strcpy(x, "<PageList><NextMarker>");
	memset(x + strlen(x), 'm', big);
	strcpy(x + 22 + big, "</NextMarker></PageList>");
	struct got g = {0};
	CHECK_INT(parse_all(x, 0, 1 << 20, &g, NULL), -EIO);
	free(x);
}

static void test_callback_error_stops_the_parse(void)
{
	struct got g = {.fail_at = 2};

	CHECK_INT(parse_all(PL, 0, 1LL << 40, &g, NULL), -EINTR);
	CHECK_INT(g.n, 1);
}

static void test_storage_error_body(void)
{
	char code[64], msg[256];
	const char *xml =
	    "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>"
	    "AuthenticationFailed</Code><Message>Server failed to authenticate"
	    " the request.\nRequestId:1\nTime:2024</Message>"
	    "<AuthenticationErrorDetail>Signed expiry time [x] must be after"
	    "</AuthenticationErrorDetail></Error>";

	CHECK_INT(blob_parse_error_xml(xml, strlen(xml), code, sizeof(code),
				       msg, sizeof(msg)),
		  0);
	CHECK_STR(code, "AuthenticationFailed");
	CHECK_STR(msg, "Server failed to authenticate the request. "
		       "RequestId:1 Time:2024");
	/* tiny buffers truncate, never overflow */
	CHECK_INT(blob_parse_error_xml(xml, strlen(xml), code, 5, msg, 4), 0);
	CHECK_STR(code, "Auth");
	CHECK_STR(msg, "Ser");
	CHECK_INT(blob_parse_error_xml("<Err", 4, code, sizeof(code), msg,
				       sizeof(msg)),
		  -EIO);
	CHECK_INT(blob_parse_error_xml("<Foo/>", 6, code, sizeof(code), msg,
				       sizeof(msg)),
		  -EIO);
}

int main(void)
{
	test_content_range_exact_or_rejected();
	test_sas_expiry_is_read_from_se();
	test_page_list_ranges_become_half_open();
	test_page_list_split_at_every_byte();
	test_page_list_clipped_to_the_window();
	test_page_list_next_marker_is_kept();
	test_malformed_page_lists_are_refused();
	test_callback_error_stops_the_parse();
	test_storage_error_body();
	return CHECK_DONE();
}
