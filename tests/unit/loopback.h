/*
 * loopback.h -- a scripted HTTP server on 127.0.0.1 inside the test
 * process, for the unit tests of net/ that need one (test_net_loopback.c,
 * test_net_blob_engine.c).
 *
 * The server is a test fixture, not a parser of outside input: it reads
 * what libcurl sends and answers with the reply the current test's
 * handler writes.  One thread per connection; the handler runs under one
 * mutex, so handlers may keep counters in plain statics.  Header-only
 * (static inline) like check.h: each test program gets its own server.
 *
 * server_start speaks plain HTTP; server_start_tls HTTPS, with a
 * certificate for 127.0.0.1 made by the openssl command at run time (a
 * test dependency), since blob sources accept https URLs only.
 */
#ifndef RPFS_TEST_LOOPBACK_H
#define RPFS_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

struct req {
	char method[16];
	char target[2048];
	char authz[512];
	char client_req_id[128];
	char body[8192];
};

struct reply {
	int status;
	char headers[2048]; /* extra "Name: value\r\n" lines */
	char *body;	    /* malloc'd or NULL */
	size_t body_len;
	const char *content_type; /* NULL: application/json */
	bool drop;		  /* close the connection without answering */
	bool hang;    /* never answer; close when the client gives up */
	int delay_ms; /* wait this long before answering */
};

typedef void (*handler_fn)(const struct req *rq, struct reply *rp);

static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static handler_fn handler;
static int nreq;
static struct req last_req;
static char ids_seen[8][128];
static int port;
static char base[64];
static SSL_CTX *srv_tls; /* NULL: plain HTTP */

/* One accepted connection, with TLS or without. */
struct conn {
	int fd;
	SSL *ssl;
};

static inline ssize_t conn_read(struct conn *c, void *p, size_t n)
{
	int r;

	if (!c->ssl)
		return read(c->fd, p, n);
	r = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	return r > 0 ? r : -1;
}

static inline ssize_t conn_write(struct conn *c, const void *p, size_t n)
{
	int r;

	if (!c->ssl)
		return write(c->fd, p, n);
	r = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	return r > 0 ? r : -1;
}

static inline void reply_json(struct reply *rp, int status, const char *json)
{
	rp->status = status;
	rp->body = strdup(json);
	rp->body_len = strlen(json);
}

static inline void reply_xml(struct reply *rp, int status, const char *xml)
{
	reply_json(rp, status, xml);
	rp->content_type = "application/xml";
}

static inline void add_header(struct reply *rp, const char *name, const char *v)
{
	size_t n = strlen(rp->headers);

	snprintf(rp->headers + n, sizeof(rp->headers) - n, "%s: %s\r\n", name,
		 v);
}

static inline bool read_request(struct conn *c, struct req *rq)
{
	char buf[16384];
	size_t n = 0;
	char *end = NULL, *line, *save;
	long clen = 0;

	memset(rq, 0, sizeof(*rq));
	while (!end) {
		ssize_t r;

		if (n >= sizeof(buf) - 1)
			return false;
		r = conn_read(c, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			return false;
		n += (size_t)r;
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	*end = '\0';
	{
		size_t have = n - (size_t)(end + 4 - buf);
		char *b = end + 4;

		line = strtok_r(buf, "\r\n", &save);
		if (!line ||
		    sscanf(line, "%15s %2047s", rq->method, rq->target) != 2)
			return false;
		while ((line = strtok_r(NULL, "\r\n", &save))) {
			if (strncasecmp(line, "Authorization: ", 15) == 0)
				snprintf(rq->authz, sizeof(rq->authz), "%s",
					 line + 15);
			else if (strncasecmp(
				     line, "x-ms-client-request-id: ", 24) == 0)
				snprintf(rq->client_req_id,
					 sizeof(rq->client_req_id), "%s",
					 line + 24);
			else if (strncasecmp(line, "Content-Length: ", 16) == 0)
				clen = atol(line + 16);
		}
		if (clen >= (long)sizeof(rq->body))
			return false;
		memcpy(rq->body, b, have < (size_t)clen ? have : (size_t)clen);
		while (have < (size_t)clen) {
			ssize_t r =
			    conn_read(c, rq->body + have, (size_t)clen - have);

			if (r <= 0)
				return false;
			have += (size_t)r;
		}
		rq->body[clen] = '\0';
	}
	return true;
}

static inline bool write_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = conn_write(c, p, n);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static inline void *conn_main(void *arg)
{
	struct conn c = {.fd = (int)(long)arg};
	struct req rq;

	if (srv_tls) {
		c.ssl = SSL_new(srv_tls);
		if (!c.ssl || !SSL_set_fd(c.ssl, c.fd) ||
		    SSL_accept(c.ssl) != 1)
			goto out;
	}
	while (read_request(&c, &rq)) {
		struct reply rp = {.status = 200};
		char head[4096];
		int hn;

		pthread_mutex_lock(&srv_lock);
		if (nreq < 8)
			snprintf(ids_seen[nreq], sizeof(ids_seen[0]), "%s",
				 rq.client_req_id);
		nreq++;
		last_req = rq;
		if (handler)
			handler(&rq, &rp);
		pthread_mutex_unlock(&srv_lock);
		if (rp.hang) {
			char sink[512];

			/* outside the lock: other connections go on */
			while (conn_read(&c, sink, sizeof(sink)) > 0)
				;
		}
		if (rp.drop || rp.hang) {
			free(rp.body);
			break;
		}
		if (rp.delay_ms > 0) /* outside the lock, like hang */
			usleep((useconds_t)rp.delay_ms * 1000);
		hn = snprintf(head, sizeof(head),
			      "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
			      "Content-Type: %s\r\n%s\r\n",
			      rp.status, rp.body_len,
			      rp.content_type ? rp.content_type
					      : "application/json",
			      rp.headers);
		if (!write_all(&c, head, (size_t)hn) ||
		    (rp.body_len && !write_all(&c, rp.body, rp.body_len))) {
			free(rp.body);
			break;
		}
		free(rp.body);
	}
out:
	SSL_free(c.ssl);
	close(c.fd);
	return NULL;
}

static inline void *accept_main(void *arg)
{
	int ls = (int)(long)arg;

	for (;;) {
		int fd = accept(ls, NULL, NULL);
		int one = 1;
		pthread_t t;

		if (fd < 0)
			continue;
		/* head and body are separate writes: without this the body
		 * waits for the client's delayed ACK (40 ms) */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				 sizeof(one));
		if (pthread_create(&t, NULL, conn_main, (void *)(long)fd))
			close(fd);
		else
			pthread_detach(t);
	}
	return NULL;
}

/* Listen on an ephemeral port of 127.0.0.1; base is its URL.  0 or -1. */
static inline int server_start(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	pthread_t t;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(ls, 16) || getsockname(ls, (struct sockaddr *)&a, &al))
		return -1;
	port = ntohs(a.sin_port);
	snprintf(base, sizeof(base), "%s://127.0.0.1:%d",
		 srv_tls ? "https" : "http", port);
	if (pthread_create(&t, NULL, accept_main, (void *)(long)ls))
		return -1;
	pthread_detach(t);
	return 0;
}

/*
 * Like server_start, over HTTPS: makes a self-signed certificate for
 * 127.0.0.1 in dir and puts its path in cafile (for http_config.cafile).
 */
static inline int server_start_tls(const char *dir, char *cafile, size_t n)
{
	char cmd[1024], key[512];

	snprintf(cafile, n, "%s/server.crt", dir);
	snprintf(key, sizeof(key), "%s/server.key", dir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt "
		 "ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 "
		 "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' "
		 "2>/dev/null",
		 key, cafile);
	if (system(cmd) != 0) {
		fprintf(stderr, "openssl could not make a test certificate\n");
		return -1;
	}
	srv_tls = SSL_CTX_new(TLS_server_method());
	if (!srv_tls ||
	    SSL_CTX_use_certificate_file(srv_tls, cafile, SSL_FILETYPE_PEM) !=
		1 ||
	    SSL_CTX_use_PrivateKey_file(srv_tls, key, SSL_FILETYPE_PEM) != 1)
		return -1;
	return server_start();
}

/* Answer with h from now on, and count requests from zero. */
static inline void use(handler_fn h)
{
	pthread_mutex_lock(&srv_lock);
	handler = h;
	nreq = 0;
	memset(ids_seen, 0, sizeof(ids_seen));
	pthread_mutex_unlock(&srv_lock);
}

/* Requests received since the last use(). */
static inline int requests(void)
{
	int n;

	pthread_mutex_lock(&srv_lock);
	n = nreq;
	pthread_mutex_unlock(&srv_lock);
	return n;
}

static inline double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#endif
