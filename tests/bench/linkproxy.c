/*
 * linkproxy -- a cloud-like link on loopback: a TCP proxy that adds latency
 * to every request and caps the download rate of every connection.
 *
 *     linkproxy LISTEN_PORT TARGET_PORT [--rtt-ms 20] [--mbps 100]
 *
 * Job: let tests/bench/bench.sh compare rpfs with curl over a link that
 * looks like Azure Storage seen from a VM (tens of ms per request, ~100 MB/s
 * per TCP connection) without root, tc or a network namespace.  Both sides
 * bind or connect to 127.0.0.1 only.
 *
 * How: TLS is not terminated; bytes are forwarded as they are.  Bytes from
 * the client (requests, TLS handshake messages) are held back for the whole
 * round-trip time before they go on, so every request, and every handshake
 * round trip, costs one RTT.  Bytes from the server are paced by a token
 * bucket per connection (MB = 10^6 bytes).  Trade-off: latency on the reply
 * direction is folded into the request direction, which is what a request/
 * response protocol sees anyway.  Prints READY on stdout once listening.
 *
 * Why C: the Python version it replaces used about one CPU of the 2-vCPU
 * benchmark machine at a few hundred MB/s, which made phase (b) noisy.
 * Threads per connection: one reads the client into a queue stamped with
 * due times, one sends that queue to the server when due, one paces the
 * server's bytes to the client.  Blocking sockets; the kernel does the
 * copying.
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o linkproxy \
 *            linkproxy.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UP_CHUNK 65536		/* client -> server recv size */
#define DOWN_CHUNK (256 * 1024) /* server -> client recv size */
#define BEHIND_RESET 0.05	/* s behind the bucket that restarts it */

static int target_port;
static double delay_s; /* RTT in seconds */
static double rate;    /* bytes per second per connection */
static pthread_attr_t detached;

struct chunk {
	struct chunk *next;
	double due;
	size_t len;
	char data[];
};

struct conn {
	int cfd, ufd; /* client, upstream (server); -1 when not open */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct chunk *head, *tail; /* client bytes waiting for their due time */
	int eof;		   /* client side ended; after the queue */
	double eof_due;
	int up_dead; /* sending to the server failed: stop queueing */
	int refs;    /* threads still using the connection */
};

static void warn(const char *what)
{
	fprintf(stderr, "linkproxy: %s: %s\n", what, strerror(errno));
}

static void die(const char *what)
{
	warn(what);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime");
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	struct timespec ts;
	int e;

	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec > 999999999)
		ts.tv_nsec = 999999999;
	while ((e = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)))
		if (e != EINTR) {
			errno = e;
			die("clock_nanosleep");
		}
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Half-close: the peer may be gone already (ENOTCONN), which is fine. */
static void end_writes(int fd)
{
	if (shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN)
		warn("shutdown");
}

static void free_queue(struct conn *c)
{
	while (c->head) {
		struct chunk *k = c->head;
		c->head = k->next;
		free(k);
	}
	c->tail = NULL;
}

/* pthread calls return an error number; any error here is a bug. */
static void pt(int e, const char *what)
{
	if (e) {
		errno = e;
		die(what);
	}
}

static void lock(struct conn *c)
{
	pt(pthread_mutex_lock(&c->mu), "pthread_mutex_lock");
}

static void unlock(struct conn *c)
{
	pt(pthread_mutex_unlock(&c->mu), "pthread_mutex_unlock");
}

/* Drop one thread's reference; the last one closes and frees. */
static void release(struct conn *c)
{
	int last;

	lock(c);
	last = --c->refs == 0;
	unlock(c);
	if (!last)
		return;
	if (c->ufd >= 0 && close(c->ufd) < 0)
		warn("close");
	if (close(c->cfd) < 0)
		warn("close");
	free_queue(c);
	pt(pthread_cond_destroy(&c->cv), "pthread_cond_destroy");
	pt(pthread_mutex_destroy(&c->mu), "pthread_mutex_destroy");
	free(c);
}

/* Start fn(c) in a detached thread holding its own reference. */
static int spawn(struct conn *c, void *(*fn)(void *))
{
	pthread_t t;
	int e;

	lock(c);
	c->refs++;
	unlock(c);
	e = pthread_create(&t, &detached, fn, c);
	if (e) {
		errno = e;
		warn("pthread_create");
		lock(c);
		c->refs--; /* the caller still holds one: never the last */
		unlock(c);
		return -1;
	}
	return 0;
}

static void signal_locked(struct conn *c)
{
	pt(pthread_cond_signal(&c->cv), "pthread_cond_signal");
}

/* The client side ended (due: when the server may see the end). */
static void queue_eof(struct conn *c, double due)
{
	lock(c);
	c->eof = 1;
	c->eof_due = due;
	signal_locked(c);
	unlock(c);
}

/* Client to server, first half: stamp each chunk with its due time. */
static void read_client(struct conn *c)
{
	char buf[UP_CHUNK];

	for (;;) {
		ssize_t n = recv(c->cfd, buf, sizeof(buf), 0);
		struct chunk *k;
		int dead;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) { /* error: end at once, after the queue */
			queue_eof(c, 0);
			return;
		}
		if (n == 0) {
			queue_eof(c, now() + delay_s);
			return;
		}
		k = malloc(sizeof(*k) + (size_t)n);
		if (!k) {
			warn("malloc");
			queue_eof(c, 0);
			return;
		}
		k->next = NULL;
		k->due = now() + delay_s;
		k->len = (size_t)n;
		memcpy(k->data, buf, (size_t)n);
		lock(c);
		dead = c->up_dead;
		if (!dead) {
			if (c->tail)
				c->tail->next = k;
			else
				c->head = k;
			c->tail = k;
			signal_locked(c);
		}
		unlock(c);
		if (dead) {
			free(k);
			return;
		}
	}
}

/* Client to server, second half: forward each chunk when it is due. */
static void *send_delayed(void *arg)
{
	struct conn *c = arg;

	for (;;) {
		struct chunk *k;
		double due;
		int r;

		lock(c);
		while (!c->head && !c->eof)
			pt(pthread_cond_wait(&c->cv, &c->mu),
			   "pthread_cond_wait");
		k = c->head;
		if (k) {
			c->head = k->next;
			if (!c->head)
				c->tail = NULL;
		}
		due = k ? k->due : c->eof_due;
		unlock(c);
		sleep_until(due);
		if (!k)
			break;
		r = send_all(c->ufd, k->data, k->len);
		free(k);
		if (r < 0) {
			lock(c);
			c->up_dead = 1;
			free_queue(c);
			unlock(c);
			break;
		}
	}
	end_writes(c->ufd);
	release(c);
	return NULL;
}

/* Server to client: at most `rate` bytes per second. */
static void *send_paced(void *arg)
{
	struct conn *c = arg;
	char *buf = malloc(DOWN_CHUNK);
	double t0 = now(), sent = 0;

	if (!buf)
		warn("malloc");
	while (buf) {
		ssize_t n = recv(c->ufd, buf, DOWN_CHUNK, 0);
		double t, due;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || send_all(c->cfd, buf, (size_t)n) < 0)
			break;
		sent += (double)n;
		due = t0 + sent / rate;
		t = now();
		if (due > t) {
			sleep_until(due);
		} else if (t - due > BEHIND_RESET) {
			/* idle time is not credit: restart the bucket */
			t0 = t;
			sent = 0;
		}
	}
	free(buf);
	end_writes(c->cfd);
	release(c);
	return NULL;
}

static void set_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		warn("setsockopt TCP_NODELAY");
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* Per connection: connect upstream, start the other two threads, then
 * read the client. */
static void *serve(void *arg)
{
	struct conn *c = arg;
	struct sockaddr_in a = loopback(target_port);

	c->ufd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->ufd < 0) {
		warn("socket");
		release(c);
		return NULL;
	}
	if (connect(c->ufd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		warn("connect to target");
		release(c);
		return NULL;
	}
	set_nodelay(c->cfd);
	set_nodelay(c->ufd);
	if (spawn(c, send_delayed) < 0) {
		release(c);
		return NULL;
	}
	if (spawn(c, send_paced) < 0)
		queue_eof(c, 0); /* no way back: end the connection */
	else
		read_client(c);
	release(c);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: linkproxy LISTEN_PORT TARGET_PORT "
			"[--rtt-ms 20] [--mbps 100]\n");
	exit(2);
}

/* A finite number >= 0, or usage. */
static double parse_num(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0)
		usage();
	return v;
}

static int parse_port(const char *s)
{
	double v = parse_num(s);

	if (v > 65535 || v != (int)v)
		usage();
	return (int)v;
}

/* The value of option NAME at argv[*i] ("NAME V" or "NAME=V"), else NULL. */
static const char *opt(int argc, char **argv, int *i, const char *name)
{
	size_t l = strlen(name);
	const char *s = argv[*i];

	if (strncmp(s, name, l) != 0)
		return NULL;
	if (s[l] == '=')
		return s + l + 1;
	if (s[l] != '\0')
		return NULL;
	if (++*i >= argc)
		usage();
	return argv[*i];
}

static struct conn *new_conn(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (pthread_mutex_init(&c->mu, NULL)) {
		free(c);
		return NULL;
	}
	if (pthread_cond_init(&c->cv, NULL)) {
		pt(pthread_mutex_destroy(&c->mu), "pthread_mutex_destroy");
		free(c);
		return NULL;
	}
	c->cfd = fd;
	c->ufd = -1;
	c->refs = 1;
	return c;
}

int main(int argc, char **argv)
{
	double rtt_ms = 20, mbps = 100;
	const char *pos[2], *v;
	int npos = 0, listen_port, one = 1, ls;
	struct sockaddr_in a;

	for (int i = 1; i < argc; i++) {
		if ((v = opt(argc, argv, &i, "--rtt-ms")))
			rtt_ms = parse_num(v);
		else if ((v = opt(argc, argv, &i, "--mbps")))
			mbps = parse_num(v);
		else if (argv[i][0] == '-' || npos == 2)
			usage();
		else
			pos[npos++] = argv[i];
	}
	if (npos != 2 || mbps <= 0)
		usage();
	listen_port = parse_port(pos[0]);
	target_port = parse_port(pos[1]);
	delay_s = rtt_ms / 1000;
	rate = mbps * 1e6;

	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die("signal");
	pt(pthread_attr_init(&detached), "pthread_attr_init");
	pt(pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED),
	   "pthread_attr_setdetachstate");
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0)
		die("socket");
	if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("setsockopt SO_REUSEADDR");
	a = loopback(listen_port);
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(ls, 128) < 0)
		die("listen");
	if (printf("READY\n") < 0 || fflush(stdout) == EOF)
		die("stdout");

	for (;;) {
		struct conn *c;
		pthread_t t;
		int e, fd = accept(ls, NULL, NULL);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				warn("accept");
				sleep_until(now() + 0.1); /* let some end */
			} else if (errno != EINTR && errno != ECONNABORTED &&
				   errno != EPROTO) {
				die("accept");
			}
			continue;
		}
		c = new_conn(fd);
		if (!c) {
			fprintf(stderr,
				"linkproxy: no memory for a connection\n");
			if (close(fd) < 0)
				warn("close");
			continue;
		}
		if ((e = pthread_create(&t, &detached, serve, c))) {
			errno = e;
			warn("pthread_create");
			release(c);
		}
	}
}
