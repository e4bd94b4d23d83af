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
 */
#ifndef RPFS_TEST_LOOPBACK_H
#define RPFS_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
	bool hang; /* never answer; close when the client gives up */
};

typedef void (*handler_fn)(const struct req *rq, struct reply *rp);

static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static handler_fn handler;
static int nreq;
static struct req last_req;
static char ids_seen[8][128];
static int port;
static char base[64];

static inline void reply_json(struct reply *rp, int status, const char *json)
{
	rp->status = status;
	rp->body = strdup(json);
	rp->body_len = strlen(json);
}

static inline void add_header(struct reply *rp, const char *name, const char *v)
{
	size_t n = strlen(rp->headers);

	snprintf(rp->headers + n, sizeof(rp->headers) - n, "%s: %s\r\n", name,
		 v);
}

static inline bool read_request(int fd, struct req *rq)
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
		r = read(fd, buf + n, sizeof(buf) - 1 - n);
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
			    read(fd, rq->body + have, (size_t)clen - have);

			if (r <= 0)
				return false;
			have += (size_t)r;
		}
		rq->body[clen] = '\0';
	}
	return true;
}

static inline bool write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static inline void *conn_main(void *arg)
{
	int fd = (int)(long)arg;
	struct req rq;

	while (read_request(fd, &rq)) {
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
			while (read(fd, sink, sizeof(sink)) > 0)
				;
		}
		if (rp.drop || rp.hang) {
			free(rp.body);
			break;
		}
		hn = snprintf(head, sizeof(head),
			      "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
			      "Content-Type: %s\r\n%s\r\n",
			      rp.status, rp.body_len,
			      rp.content_type ? rp.content_type
					      : "application/json",
			      rp.headers);
		if (!write_all(fd, head, (size_t)hn) ||
		    (rp.body_len && !write_all(fd, rp.body, rp.body_len))) {
			free(rp.body);
			break;
		}
		free(rp.body);
	}
	close(fd);
	return NULL;
}

static inline void *accept_main(void *arg)
{
	int ls = (int)(long)arg;

	for (;;) {
		int fd = accept(ls, NULL, NULL);
		pthread_t t;

		if (fd < 0)
			continue;
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
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
	if (pthread_create(&t, NULL, accept_main, (void *)(long)ls))
		return -1;
	pthread_detach(t);
	return 0;
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
