/* freeport - print free TCP ports on 127.0.0.1, one per line.
 *
 *   freeport            one port
 *   freeport N          N distinct ports (1..64)
 *   freeport -p PORT    PORT itself when it can be bound now, else a free one
 *
 * Each port comes from binding 127.0.0.1:0 and reading the port back with
 * getsockname(). All sockets stay open until every port is chosen, so the N
 * ports differ. A port is only free at the moment we close it: callers still
 * retry when a server fails to bind (scripts/lib.sh and tests/harness do).
 * Exit status 0, or 1 with a message on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PORTS 64

/* Bind a new socket to 127.0.0.1:port (0 = any). Returns the fd and stores the
 * bound port, or returns -1 with errno set. */
static int bind_port(int port, int *bound)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (port) {
        /* Servers set SO_REUSEADDR, so connections of a previous run in TIME_WAIT do not
         * keep them from this port: judge it the same way. */
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((unsigned short)port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: freeport [N] | freeport -p PORT\n");
}

int main(int argc, char **argv)
{
    int fds[MAX_PORTS], ports[MAX_PORTS];
    int want = 1, preferred = 0, n = 0, rc = 1;

    if (argc == 2 && parse_int(argv[1], 1, MAX_PORTS, &want) == 0) {
        /* freeport N */
    } else if (argc == 3 && strcmp(argv[1], "-p") == 0 &&
               parse_int(argv[2], 1, 65535, &preferred) == 0) {
        /* freeport -p PORT */
    } else if (argc != 1) {
        usage();
        return 2;
    }
    if (preferred) {
        fds[0] = bind_port(preferred, &ports[0]);
        if (fds[0] >= 0)
            n = 1;
    }
    while (n < want) {
        fds[n] = bind_port(0, &ports[n]);
        if (fds[n] < 0) {
            fprintf(stderr, "freeport: bind 127.0.0.1:0: %s\n", strerror(errno));
            goto out;
        }
        n++;
    }
    for (int i = 0; i < n; i++)
        printf("%d\n", ports[i]);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return rc;
}
