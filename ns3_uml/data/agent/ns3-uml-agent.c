/*
 * ns3-uml-agent: the guest's init and its end of the command channel (docs/DESIGN.md
 * section 7).
 *
 * The kernel execs it as PID 1 (init=, its arguments after "--" on the kernel's command
 * line). It does the guest's set-up with system calls (--setup FILE: mounts, sysctls,
 * interfaces and routes over rtnetlink; no fork+exec per step, which is what costs in
 * UML), then runs shell commands the host asks for and sends back their output, exit
 * status and start/end times, over the frames of agent-protocol.h on the agent's
 * virtio-console port. As PID 1 it also reaps every orphan and powers the guest off. One
 * process, no threads, no timers once set up: one poll() with an infinite timeout over
 * the port, a signalfd for SIGCHLD and the commands' pipes, so an idle agent adds no
 * events to the simulation.
 *
 * Usage: ns3-uml-agent [--setup FILE [--errors FILE]] [--port PATH | --fd N]
 *                      [--workdir DIR] [--umount DIR]
 *   --setup FILE   the set-up to do first (below)
 *   --errors FILE  where set-up failures go, a line each (appended; ns3_uml reads them as
 *                  out/setup.err); also on stderr (the console)
 *   --port PATH    the port to open (default: the one the set-up's wait-port found, else
 *                  AGENT_PORT_DEVICE)
 *   --fd N         an already open descriptor instead (the host's tests: a socketpair)
 *   --workdir DIR  where commands run (default: the agent's working directory)
 *   --umount DIR   unmounted (after sync) before power-off
 *
 * The set-up file (written by ns3_uml/guest/setup.py from a GuestConfig): one step a line,
 * done in order; words are separated by one space, and the last word of env, device and
 * sysctl is the rest of the line (it may hold spaces). Empty lines and lines starting
 * with '#' are ignored. "?DEV STEP" does STEP only if a device step found DEV.
 *   env NAME VALUE                   setenv (the commands inherit it)
 *   umask OCTAL
 *   mount FSTYPE SOURCE TARGET [DATA]    mount(2), DATA its options ("mode=755")
 *   mount-once FSTYPE SOURCE TARGET [DATA]   the same unless /proc/mounts has FSTYPE on
 *                                    TARGET already (devtmpfs, mounted by the kernel)
 *   mkdir PATH...                    with its parents (mkdir -p)
 *   chmod OCTAL PATH...
 *   symlink TARGET LINK
 *   hostname NAME
 *   device DEV PATTERN MESSAGE       DEV is there if a path matches PATTERN (wildcards *?[]
 *                                    within components), else MESSAGE is an error
 *   sysctl PATH NAME VALUE           writes "VALUE\n" to PATH (an existing file, e.g. under
 *                                    /proc/sys); error "sysctl NAME=VALUE: cannot write PATH"
 *   ip [-4|-6] WORDS...              as `ip WORDS`: "link set dev DEV [up|down|mtu N]...",
 *                                    "addr add ADDR[/LEN] dev DEV", "route add
 *                                    (default|NET[/LEN]) [via GW] [dev DEV] [metric N]" over
 *                                    rtnetlink; anything else is one fork+exec of ip.
 *                                    Error "ip WORDS: WHY" (iproute2's message)
 *   wait-link DEV SECONDS            until DEV's operstate is up or unknown, 1 ms polls;
 *                                    error "DEV did not come up"
 *   wait-port NAME SECONDS           until the virtio port called NAME has its /dev node,
 *                                    1 ms polls; it is then the port served; error "no
 *                                    virtio port named NAME"
 * Mount, mkdir, chmod, symlink, env and hostname failures go to the console only (the shell
 * init's way: the errors file is in a mount of the set-up's own). A line the agent cannot
 * do is an error naming the file and line; the set-up goes on.
 *
 * Built static by ns3_uml/guest/agent.py: the guest runs the host's binaries over hostfs,
 * and a static binary needs none of the host's libraries and no dynamic loader.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <limits.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent-protocol.h"

#define PIPE_READ_SIZE 16384 /* a generous read keeps frames few */
#define FRAME_MAX (AGENT_HEADER_SIZE + AGENT_MAX_PAYLOAD)
#define INBUF_SIZE (2 * FRAME_MAX)

/* A command from RUN until its EXIT. */
struct command {
    uint32_t id;
    pid_t pid; /* also its process group and session */
    uint64_t start_ns;
    int fd[2]; /* read ends of its stdout and stderr pipes; -1 once closed */
};

static const char *workdir;
static const char *umount_dir;
static int port_fd = -1;
static int sig_fd = -1;
static int is_init;

static struct command *cmds;
static size_t ncmds, cap_cmds;

static unsigned char inbuf[INBUF_SIZE];
static size_t inlen;
static unsigned char outbuf[FRAME_MAX];

static void port_gone(void);
static void power_off(void) __attribute__((noreturn));

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ns3-uml-agent: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A set-up failure. PID 1 must never exit (the kernel panics): it powers off instead. */
static void fatal(const char *what)
{
    say("%s: %s", what, strerror(errno));
    if (is_init)
        power_off();
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The whole buffer or -1. A port write takes at most 32 KiB, a socket may take less:
 * loop. A non-blocking descriptor waits in poll() for room. */
static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                return -1;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

/* One frame; every payload sent fits (pipe reads, short texts, fixed records). */
static void send_frame(uint16_t type, uint32_t id, const void *p, size_t n)
{
    if (port_fd < 0)
        return; /* the host went away: output is dropped */
    put_le(outbuf, n, 4);
    put_le(outbuf + 4, type, 2);
    put_le(outbuf + 6, 0, 2);
    put_le(outbuf + 8, id, 4);
    memcpy(outbuf + AGENT_HEADER_SIZE, p, n);
    if (write_all(port_fd, outbuf, AGENT_HEADER_SIZE + n) < 0)
        port_gone();
}

static void send_error(uint32_t id, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    say("error%s: %s", id ? " (command)" : "", msg);
    send_frame(AGENT_ERROR, id, msg, (size_t)n);
}

static struct command *find_command(uint32_t id)
{
    for (size_t i = 0; i < ncmds; i++)
        if (cmds[i].id == id)
            return &cmds[i];
    return NULL;
}

static void close_pipe(struct command *c, int which)
{
    if (c->fd[which] >= 0) {
        close(c->fd[which]);
        c->fd[which] = -1;
    }
}

/* Forward what one pipe holds now (one read; 0 once it is empty, at EOF or failed). */
static int forward_pipe(struct command *c, int which)
{
    static unsigned char buf[PIPE_READ_SIZE];
    ssize_t n = read(c->fd[which], buf, sizeof buf);
    if (n > 0) {
        send_frame(which ? AGENT_STDERR : AGENT_STDOUT, c->id, buf, (size_t)n);
        return 1;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR))
        close_pipe(c, which);
    return 0;
}

/* Not PID 1 (a test on the host): take the commands down, reap them, exit. */
static void quit(void) __attribute__((noreturn));
static void quit(void)
{
    for (size_t i = 0; i < ncmds; i++)
        kill(-cmds[i].pid, SIGKILL);
    for (size_t i = 0; i < ncmds; i++)
        while (waitpid(cmds[i].pid, NULL, 0) < 0 && errno == EINTR)
            ;
    exit(0);
}

/* The host went away. PID 1 keeps reaping (commands' output is dropped); anything else
 * quits. */
static void port_gone(void)
{
    if (port_fd < 0)
        return;
    close(port_fd);
    port_fd = -1;
    if (!is_init)
        quit();
    say("the host closed the port; still reaping");
}

/* ---- RUN ------------------------------------------------------------------------------ */

/* In the child, between fork and exec: on failure the errno goes to the parent through
 * `report` (close-on-exec, so a successful exec closes it with nothing written). */
static void child(const char *cmd, int out, int err, int report) __attribute__((noreturn));
static void child(const char *cmd, int out, int err, int report)
{
    sigset_t none;
    sigemptyset(&none);
    /* Blocked and ignored signals survive exec: give the command the defaults. */
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (setsid() < 0 || (workdir && chdir(workdir) < 0) || null < 0 || dup2(null, 0) < 0 ||
        dup2(out, 1) < 0 || dup2(err, 2) < 0)
        goto failed;
    /* Every other descriptor of the agent is close-on-exec. */
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
failed:;
    int e = errno;
    ssize_t ignored = write(report, &e, sizeof e);
    (void)ignored;
    _exit(127);
}

static void run_command(uint32_t id, const unsigned char *p, size_t n)
{
    if (find_command(id)) {
        send_error(id, "RUN: id %u is already running", id);
        return;
    }
    if (n < 4) {
        send_error(id, "RUN: payload of %zu bytes (at least 4)", n);
        return;
    }
    uint32_t flags = (uint32_t)get_le(p, 4);
    if (flags != 0) {
        send_error(id, "RUN: unknown flags %#x", flags);
        return;
    }
    if (memchr(p + 4, 0, n - 4)) {
        send_error(id, "RUN: the command contains a NUL byte");
        return;
    }
    char *cmd = malloc(n - 4 + 1);
    if (!cmd) {
        send_error(id, "RUN: out of memory");
        return;
    }
    memcpy(cmd, p + 4, n - 4);
    cmd[n - 4] = '\0';

    int out[2] = { -1, -1 }, err[2] = { -1, -1 }, rep[2] = { -1, -1 };
    if (ncmds == cap_cmds) {
        size_t cap = cap_cmds ? 2 * cap_cmds : 16;
        struct command *more = realloc(cmds, cap * sizeof *cmds);
        if (!more) {
            send_error(id, "RUN: out of memory");
            goto done;
        }
        cmds = more;
        cap_cmds = cap;
    }
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
        send_error(id, "RUN: pipe: %s", strerror(errno));
        goto done;
    }
    uint64_t start = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        send_error(id, "RUN: fork: %s", strerror(errno));
        goto done;
    }
    if (pid == 0)
        child(cmd, out[1], err[1], rep[1]);

    close(rep[1]);
    rep[1] = -1;
    int child_errno = 0;
    ssize_t r;
    /* Returns at the exec (EOF) or with the errno of what failed before it. */
    while ((r = read(rep[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR)
        ;
    if (r > 0) {
        /* The child has exited: SIGCHLD reaps it as a pid no command has. */
        errno = child_errno;
        send_error(id, "RUN: cannot start /bin/sh%s%s: %s", workdir ? " in " : "",
                   workdir ? workdir : "", strerror(child_errno));
        goto done;
    }
    struct command *c = &cmds[ncmds++];
    c->id = id;
    c->pid = pid;
    c->start_ns = start;
    c->fd[0] = out[0];
    c->fd[1] = err[0];
    out[0] = err[0] = -1;
    fcntl(c->fd[0], F_SETFL, O_NONBLOCK);
    fcntl(c->fd[1], F_SETFL, O_NONBLOCK);
    unsigned char started[12];
    put_le(started, start, 8);
    put_le(started + 8, (uint32_t)pid, 4);
    send_frame(AGENT_STARTED, id, started, sizeof started);
done:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
        if (rep[i] >= 0)
            close(rep[i]);
    }
    free(cmd);
}

/* ---- exits ---------------------------------------------------------------------------- */

/* Its process has exited: what its pipes hold now is all the output the host gets (what
 * it left running may keep a pipe open for ever, so nothing more is waited for). */
static void command_exited(struct command *c, int status)
{
    uint64_t end = now_ns();
    for (int which = 0; which < 2; which++) {
        while (c->fd[which] >= 0 && forward_pipe(c, which))
            ;
        close_pipe(c, which);
    }
    unsigned char exitp[20];
    put_le(exitp, c->start_ns, 8);
    put_le(exitp + 8, end, 8);
    put_le(exitp + 16, (uint32_t)status, 4);
    uint32_t id = c->id;
    *c = cmds[--ncmds]; /* order does not matter */
    send_frame(AGENT_EXIT, id, exitp, sizeof exitp);
}

static void reap(void)
{
    struct signalfd_siginfo si;
    while (read(sig_fd, &si, sizeof si) == sizeof si)
        ; /* one SIGCHLD may stand for several exits: waitpid says which */
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < ncmds; i++) {
            if (cmds[i].pid == pid) {
                command_exited(&cmds[i], status);
                break;
            }
        }
        /* Any other pid: an orphan re-parented to PID 1, or a child that failed to start. */
    }
}

/* ---- POWEROFF ------------------------------------------------------------------------- */

static void power_off(void)
{
    kill(-1, SIGKILL); /* everything but PID 1 */
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    sync();
    if (umount_dir) {
        if (chdir("/") < 0 || umount(umount_dir) < 0)
            say("umount %s: %s", umount_dir, strerror(errno));
    }
    int fd = open("/proc/sysrq-trigger", O_WRONLY);
    if (fd < 0 || write(fd, "o", 1) != 1)
        reboot(RB_POWER_OFF);
    /* The power-off runs asynchronously; PID 1 must not exit meanwhile (a panic). */
    for (;;)
        pause();
}

/* ---- frames from the host ------------------------------------------------------------- */

static void handle_frame(uint16_t type, uint32_t id, const unsigned char *p, size_t n)
{
    switch (type) {
    case AGENT_RUN:
        if (id == 0)
            send_error(0, "RUN without an id");
        else
            run_command(id, p, n);
        break;
    case AGENT_SIGNAL: {
        if (n != 4) {
            send_error(0, "SIGNAL: payload of %zu bytes (4)", n);
            break;
        }
        struct command *c = find_command(id);
        int sig = (int)get_le(p, 4);
        if (!c)
            send_error(id, "SIGNAL: no command %u", id);
        else if (kill(-c->pid, sig) < 0)
            /* Without an id: the command itself goes on (an id would say it failed). */
            send_error(0, "SIGNAL %d to command %u: %s", sig, id, strerror(errno));
        break;
    }
    case AGENT_POWEROFF:
        if (!is_init)
            quit();
        power_off();
    }
}

/* Frames arrive in pieces and several at once: parse what is complete, keep the rest. */
static void read_port(void)
{
    ssize_t n = read(port_fd, inbuf + inlen, sizeof inbuf - inlen);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        port_gone();
        return;
    }
    if (n < 0)
        return;
    inlen += (size_t)n;
    size_t pos = 0;
    while (port_fd >= 0 && inlen - pos >= AGENT_HEADER_SIZE) {
        const unsigned char *h = inbuf + pos;
        uint32_t len = (uint32_t)get_le(h, 4);
        uint16_t type = (uint16_t)get_le(h + 4, 2);
        uint16_t reserved = (uint16_t)get_le(h + 6, 2);
        uint32_t id = (uint32_t)get_le(h + 8, 4);
        if (len > AGENT_MAX_PAYLOAD || reserved != 0 ||
            (type != AGENT_RUN && type != AGENT_SIGNAL && type != AGENT_POWEROFF)) {
            send_error(0, "bad frame (length %u, type %u, reserved %u): input dropped", len,
                       type, reserved);
            /* Resynchronise by dropping everything received so far: the stream has no
             * markers to find the next header by, and a bad header is a host bug anyway. */
            inlen = 0;
            return;
        }
        if (inlen - pos < AGENT_HEADER_SIZE + len)
            break;
        handle_frame(type, id, h + AGENT_HEADER_SIZE, len);
        pos += AGENT_HEADER_SIZE + len;
    }
    memmove(inbuf, inbuf + pos, inlen - pos);
    inlen -= pos;
}

/* ---- set-up (--setup FILE) ------------------------------------------------------------ */

/* What the shell init did with a fork+exec per step, done here with system calls (issue
 * 12): fork+exec is expensive in UML. The file's format is in the header comment. */

#define SETUP_MAX_ARGS 16
#define SETUP_MAX_DEVICES 64
#define POLL_NS 1000000 /* 1 ms between polls of a link's or the port's state */

static const char *errors_path; /* --errors */
static const char *setup_path;  /* --setup */
static unsigned setup_line;
static char found_devices[SETUP_MAX_DEVICES][IF_NAMESIZE];
static size_t nfound;
static char port_path[PATH_MAX]; /* set by wait-port */

/* A set-up failure the host reads (read_setup_errors): a line of the errors file, and the
 * console. Opened per line, as the shell's `>>` did: before the work directory is mounted
 * there is no file, and the console has it. */
static void setup_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void setup_error(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof msg - 2)
        n = sizeof msg - 2;
    say("set-up: %s", msg);
    if (!errors_path)
        return;
    int fd = open(errors_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    msg[n++] = '\n';
    if (write_all(fd, (unsigned char *)msg, (size_t)n) < 0)
        say("cannot write %s: %s", errors_path, strerror(errno));
    close(fd);
}

/* A step that did not do what it should but is no set-up error (as the shell's mnt,
 * mkdir, chmod, ln and hostname): the console only. */
static void setup_warn(const char *what, const char *arg)
{
    say("%s %s failed: %s", what, arg, strerror(errno));
}

static void sleep_poll(void)
{
    struct timespec ts = { 0, POLL_NS };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Polls in `seconds` of 1 ms polls, or -1 for a bad number. */
static long poll_count(const char *seconds)
{
    char *end;
    errno = 0;
    long s = strtol(seconds, &end, 10);
    if (errno || *end || s < 0 || s > 3600)
        return -1;
    return s * (1000000000 / POLL_NS);
}

static int device_found(const char *dev)
{
    for (size_t i = 0; i < nfound; i++)
        if (strcmp(found_devices[i], dev) == 0)
            return 1;
    return 0;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                return -1;
            *p = c;
            if (c == '\0')
                return 0;
        }
    }
}

/* Whether /proc/mounts has `fstype` mounted on `target`. */
static int is_mounted(const char *fstype, const char *target)
{
    char needle[PATH_MAX + 64], line[PATH_MAX + 256];
    snprintf(needle, sizeof needle, " %s %s ", target, fstype);
    FILE *f = fopen("/proc/mounts", "re");
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static int parse_mode(const char *s, mode_t *mode)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 8);
    if (errno || *end || v < 0 || v > 07777)
        return -1;
    *mode = (mode_t)v;
    return 0;
}

/* -- rtnetlink -- */

struct nl_request {
    struct nlmsghdr n;
    union {
        struct ifinfomsg link;
        struct ifaddrmsg addr;
        struct rtmsg route;
    } u;
    unsigned char attrs[256];
};

static int nl_fd = -1;
static uint32_t nl_seq;

static void nl_attr(struct nl_request *r, uint16_t type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((unsigned char *)r + NLMSG_ALIGN(r->n.nlmsg_len));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    r->n.nlmsg_len = NLMSG_ALIGN(r->n.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Sends the request and returns the kernel's answer: 0 or a negative errno. */
static int nl_talk(struct nl_request *r)
{
    if (nl_fd < 0 && (nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) < 0)
        return -errno;
    r->n.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    r->n.nlmsg_seq = ++nl_seq;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(nl_fd, r, r->n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return -errno;
    for (;;) {
        static unsigned char buf[8192];
        ssize_t n = recv(nl_fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != nl_seq || h->nlmsg_type != NLMSG_ERROR)
                continue;
            const struct nlmsgerr *e = NLMSG_DATA(h);
            return e->error;
        }
    }
}

static void nl_start(struct nl_request *r, uint16_t type, uint16_t flags, size_t body)
{
    memset(r, 0, sizeof *r);
    r->n.nlmsg_len = (uint32_t)NLMSG_LENGTH(body);
    r->n.nlmsg_type = type;
    r->n.nlmsg_flags = flags;
}

/* An address with an optional /LEN (default: the whole address), of `*family` (or any,
 * AF_UNSPEC, which it then sets). */
static int parse_prefix(const char *s, int *family, unsigned char addr[16], int *len)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash++ = '\0';
    int fam = strchr(buf, ':') ? AF_INET6 : AF_INET;
    if ((*family != AF_UNSPEC && *family != fam) || inet_pton(fam, buf, addr) != 1)
        return -1;
    *family = fam;
    int max = fam == AF_INET ? 32 : 128;
    *len = max;
    if (slash) {
        char *end;
        errno = 0;
        long v = strtol(slash, &end, 10);
        if (errno || *end || !*slash || v < 0 || v > max)
            return -1;
        *len = (int)v;
    }
    return 0;
}

/* The result of one `ip` step done over netlink. */
enum { IP_DONE, IP_FAILED, IP_NOT_UNDERSTOOD };

static int ip_index(const char *dev, int *index)
{
    *index = (int)if_nametoindex(dev);
    return *index ? 0 : -1;
}

/* `ip` failed the way iproute2 says it. */
static int ip_failed(char *msg, size_t size, int err)
{
    snprintf(msg, size, "RTNETLINK answers: %s", strerror(-err));
    return IP_FAILED;
}

static int no_device(char *msg, size_t size, const char *dev)
{
    snprintf(msg, size, "Cannot find device \"%s\"", dev);
    return IP_FAILED;
}

/* link set dev DEV [up|down|mtu N]... */
static int ip_link_set(char **w, int n, char *msg, size_t size)
{
    if (n < 5 || strcmp(w[2], "dev") != 0)
        return IP_NOT_UNDERSTOOD;
    struct nl_request r;
    nl_start(&r, RTM_NEWLINK, 0, sizeof r.u.link);
    r.u.link.ifi_family = AF_UNSPEC;
    for (int i = 4; i < n; i++) {
        if (strcmp(w[i], "up") == 0 || strcmp(w[i], "down") == 0) {
            r.u.link.ifi_change |= IFF_UP;
            r.u.link.ifi_flags = w[i][0] == 'u' ? IFF_UP : 0;
        } else if (strcmp(w[i], "mtu") == 0 && i + 1 < n) {
            char *end;
            errno = 0;
            unsigned long mtu = strtoul(w[++i], &end, 10);
            if (errno || *end || mtu > UINT32_MAX)
                return IP_NOT_UNDERSTOOD;
            uint32_t v = (uint32_t)mtu;
            nl_attr(&r, IFLA_MTU, &v, sizeof v);
        } else {
            return IP_NOT_UNDERSTOOD;
        }
    }
    if (ip_index(w[3], &r.u.link.ifi_index) < 0)
        return no_device(msg, size, w[3]);
    int err = nl_talk(&r);
    return err ? ip_failed(msg, size, err) : IP_DONE;
}

/* addr add ADDR[/LEN] dev DEV */
static int ip_addr_add(int family, char **w, int n, char *msg, size_t size)
{
    unsigned char addr[16];
    int len, index;
    if (n != 5 || strcmp(w[3], "dev") != 0 || parse_prefix(w[2], &family, addr, &len) < 0)
        return IP_NOT_UNDERSTOOD;
    if (ip_index(w[4], &index) < 0)
        return no_device(msg, size, w[4]);
    struct nl_request r;
    nl_start(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, sizeof r.u.addr);
    r.u.addr.ifa_family = (unsigned char)family;
    r.u.addr.ifa_prefixlen = (unsigned char)len;
    r.u.addr.ifa_index = (unsigned)index;
    /* iproute2's default scope: host for 127/8, else universe. */
    r.u.addr.ifa_scope = family == AF_INET && addr[0] == 127 ? RT_SCOPE_HOST
                                                              : RT_SCOPE_UNIVERSE;
    size_t bytes = family == AF_INET ? 4 : 16;
    nl_attr(&r, IFA_LOCAL, addr, bytes);
    nl_attr(&r, IFA_ADDRESS, addr, bytes);
    int err = nl_talk(&r);
    return err ? ip_failed(msg, size, err) : IP_DONE;
}

/* route add (default|NET[/LEN]) [via GW] [dev DEV] [metric N] */
static int ip_route_add(int family, char **w, int n, char *msg, size_t size)
{
    unsigned char dst[16] = { 0 }, gw[16];
    int dst_len = 0, gw_len, index = 0, have_dst = 0, have_gw = 0, have_metric = 0;
    const char *dev = NULL;
    uint32_t metric = 0;
    if (n < 3)
        return IP_NOT_UNDERSTOOD;
    for (int i = 3; i < n; i++) {
        if (i + 1 < n && strcmp(w[i], "via") == 0 && !have_gw) {
            if (parse_prefix(w[++i], &family, gw, &gw_len) < 0 || strchr(w[i], '/'))
                return IP_NOT_UNDERSTOOD;
            have_gw = 1;
        } else if (i + 1 < n && strcmp(w[i], "dev") == 0 && !dev) {
            dev = w[++i];
        } else if (i + 1 < n && strcmp(w[i], "metric") == 0 && !have_metric) {
            char *end;
            errno = 0;
            unsigned long v = strtoul(w[++i], &end, 10);
            if (errno || *end || v > UINT32_MAX)
                return IP_NOT_UNDERSTOOD;
            metric = (uint32_t)v;
            have_metric = 1;
        } else {
            return IP_NOT_UNDERSTOOD;
        }
    }
    /* The destination after the gateway: "default" takes its family from the gateway. */
    if (strcmp(w[2], "default") != 0) {
        if (parse_prefix(w[2], &family, dst, &dst_len) < 0)
            return IP_NOT_UNDERSTOOD;
        have_dst = 1;
    }
    if (family == AF_UNSPEC)
        family = AF_INET;
    if (dev && ip_index(dev, &index) < 0)
        return no_device(msg, size, dev);
    struct nl_request r;
    nl_start(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof r.u.route);
    r.u.route.rtm_family = (unsigned char)family;
    r.u.route.rtm_dst_len = (unsigned char)dst_len;
    r.u.route.rtm_table = RT_TABLE_MAIN;
    r.u.route.rtm_protocol = RTPROT_BOOT; /* what `ip route add` says */
    r.u.route.rtm_scope = have_gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    r.u.route.rtm_type = RTN_UNICAST;
    size_t bytes = family == AF_INET ? 4 : 16;
    if (have_dst)
        nl_attr(&r, RTA_DST, dst, bytes);
    if (have_gw)
        nl_attr(&r, RTA_GATEWAY, gw, bytes);
    if (dev)
        nl_attr(&r, RTA_OIF, &index, sizeof index);
    if (have_metric)
        nl_attr(&r, RTA_PRIORITY, &metric, sizeof metric);
    int err = nl_talk(&r);
    return err ? ip_failed(msg, size, err) : IP_DONE;
}

/* What the agent does not understand: one fork+exec of `ip WORDS`, its output the
 * message. */
static int ip_exec(char **w, int n, char *msg, size_t size)
{
    char *argv[SETUP_MAX_ARGS + 2];
    int out[2];
    argv[0] = "ip";
    for (int i = 0; i < n; i++)
        argv[i + 1] = w[i];
    argv[n + 1] = NULL;
    if (pipe2(out, O_CLOEXEC) < 0) {
        snprintf(msg, size, "pipe: %s", strerror(errno));
        return IP_FAILED;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(msg, size, "fork: %s", strerror(errno));
        close(out[0]);
        close(out[1]);
        return IP_FAILED;
    }
    if (pid == 0) {
        if (dup2(out[1], 1) >= 0 && dup2(out[1], 2) >= 0)
            execvp("ip", argv);
        dprintf(out[1], "cannot run ip: %s", strerror(errno));
        _exit(127);
    }
    close(out[1]);
    size_t len = 0;
    ssize_t r;
    while (len < size - 1 && ((r = read(out[0], msg + len, size - 1 - len)) > 0 ||
                              (r < 0 && errno == EINTR)))
        if (r > 0)
            len += (size_t)r;
    close(out[0]);
    while (len > 0 && msg[len - 1] == '\n') /* as the shell's $(...) */
        len--;
    msg[len] = '\0';
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? IP_DONE : IP_FAILED;
}

static void step_ip(char **w, int n)
{
    char msg[1024] = "";
    int family = AF_UNSPEC;
    char **v = w;
    int m = n;
    if (m > 0 && (strcmp(v[0], "-4") == 0 || strcmp(v[0], "-6") == 0)) {
        family = v[0][1] == '4' ? AF_INET : AF_INET6;
        v++;
        m--;
    }
    int result = IP_NOT_UNDERSTOOD;
    if (m >= 2 && strcmp(v[0], "link") == 0 && strcmp(v[1], "set") == 0 &&
        family == AF_UNSPEC)
        result = ip_link_set(v, m, msg, sizeof msg);
    else if (m >= 2 && strcmp(v[0], "addr") == 0 && strcmp(v[1], "add") == 0)
        result = ip_addr_add(family, v, m, msg, sizeof msg);
    else if (m >= 2 && strcmp(v[0], "route") == 0 && strcmp(v[1], "add") == 0)
        result = ip_route_add(family, v, m, msg, sizeof msg);
    char cmd[1024] = "ip";
    for (int i = 0; i < n; i++)
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", w[i]);
    if (result == IP_NOT_UNDERSTOOD) {
        say("set-up: `%s` is not one the agent knows: running ip", cmd);
        result = ip_exec(w, n, msg, sizeof msg);
    }
    if (result == IP_FAILED)
        setup_error("%s: %s", cmd, msg); /* the shell's `try`: "COMMAND: OUTPUT" */
}

/* -- the steps -- */

/* Polls until the state in `path` is one of `states` (each with its newline), at most
 * `polls` times; 0 once it is. */
static int wait_state(const char *path, const char *const *states, long polls)
{
    for (long i = 0;; i++) {
        char buf[32];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            buf[n] = '\0';
            for (const char *const *s = states; *s; s++)
                if (strcmp(buf, *s) == 0)
                    return 0;
        }
        if (i >= polls)
            return -1;
        /* Link state changes reach operstate from a work queue: let it run. */
        sleep_poll();
    }
}

/* Whether a path matching `pattern` exists (fnmatch wildcards within components): no
 * glob(3), whose static link wants the host's NSS libraries at run time (for `~`). */
static int pattern_exists(const char *pattern)
{
    char path[PATH_MAX];
    if (strlen(pattern) >= sizeof path || pattern[0] != '/')
        return 0;
    strcpy(path, pattern);
    char *wild = strpbrk(path, "*?[");
    if (!wild)
        return access(path, F_OK) == 0;
    char *start = wild, *end = strchr(wild, '/');
    while (start > path && start[-1] != '/')
        start--;
    /* path = DIR/COMPONENT[/REST]: match COMPONENT against DIR's entries. */
    char component[NAME_MAX + 1], rest[PATH_MAX];
    size_t clen = (size_t)((end ? end : wild + strlen(wild)) - start);
    if (clen > NAME_MAX)
        return 0;
    memcpy(component, start, clen);
    component[clen] = '\0';
    strcpy(rest, end ? end : "");
    *start = '\0';
    DIR *dir = opendir(path);
    int found = 0;
    for (struct dirent *d; !found && dir && (d = readdir(dir));) {
        char candidate[PATH_MAX];
        if (d->d_name[0] != '.' && fnmatch(component, d->d_name, 0) == 0 &&
            snprintf(candidate, sizeof candidate, "%s%s%s", path, d->d_name, rest) <
                (int)sizeof candidate)
            found = pattern_exists(candidate);
    }
    if (dir)
        closedir(dir);
    return found;
}

/* The device node of the virtio port called `name` (port_path), waited for `polls`
 * times. Ports are named vport<virtio index>p<id>, and the console's virtio index follows
 * the network devices'. Of several ports with the name, the first in name order (as the
 * shell init's glob had it): readdir's order is the file system's. */
static int find_port(const char *name, long polls)
{
    static const char ports[] = "/sys/class/virtio-ports";
    for (long i = 0;; i++) {
        char best[NAME_MAX + 1] = "";
        DIR *dir = opendir(ports);
        for (struct dirent *d; dir && (d = readdir(dir));) {
            char path[PATH_MAX], buf[NAME_MAX + 1];
            if (d->d_name[0] == '.' || (best[0] && strcmp(d->d_name, best) >= 0))
                continue;
            snprintf(path, sizeof path, "%s/%s/name", ports, d->d_name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
            if (fd >= 0)
                close(fd);
            if (n <= 0)
                continue;
            buf[n] = '\0';
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(path, sizeof path, "/dev/%s", d->d_name);
            if (strcmp(buf, name) == 0 && access(path, F_OK) == 0)
                snprintf(best, sizeof best, "%s", d->d_name);
        }
        if (dir)
            closedir(dir);
        if (best[0]) {
            snprintf(port_path, sizeof port_path, "/dev/%s", best);
            return 0;
        }
        if (i >= polls)
            return -1;
        sleep_poll();
    }
}

/* One step, its words split (`w[0]` the op). A bad step is an error line, never more. */
static void setup_step(char **w, int n)
{
    const char *op = w[0];
    mode_t mode;
    long polls;
    if (strcmp(op, "env") == 0 && n == 3) {
        if (setenv(w[1], w[2], 1) < 0)
            setup_warn("env", w[1]);
    } else if (strcmp(op, "umask") == 0 && n == 2 && parse_mode(w[1], &mode) == 0) {
        umask(mode);
    } else if ((strcmp(op, "mount") == 0 || strcmp(op, "mount-once") == 0) &&
               (n == 4 || n == 5)) {
        if (strcmp(op, "mount-once") == 0 && is_mounted(w[1], w[3]))
            return;
        if (mount(w[2], w[3], w[1], 0, n == 5 ? w[4] : NULL) < 0)
            setup_warn("mount", w[3]);
    } else if (strcmp(op, "mkdir") == 0 && n >= 2) {
        for (int i = 1; i < n; i++)
            if (make_dirs(w[i]) < 0)
                setup_warn("mkdir -p", w[i]);
    } else if (strcmp(op, "chmod") == 0 && n >= 3 && parse_mode(w[1], &mode) == 0) {
        for (int i = 2; i < n; i++)
            if (chmod(w[i], mode) < 0)
                setup_warn("chmod", w[i]);
    } else if (strcmp(op, "symlink") == 0 && n == 3) {
        if (symlink(w[1], w[2]) < 0)
            setup_warn("ln -s", w[2]);
    } else if (strcmp(op, "hostname") == 0 && n == 2) {
        if (sethostname(w[1], strlen(w[1])) < 0)
            setup_warn("hostname", w[1]);
    } else if (strcmp(op, "device") == 0 && n == 4 && strlen(w[1]) < IF_NAMESIZE) {
        if (!pattern_exists(w[2]))
            setup_error("%s", w[3]);
        else if (nfound == SETUP_MAX_DEVICES)
            setup_error("%s line %u: more than %d devices", setup_path, setup_line,
                        SETUP_MAX_DEVICES);
        else if (!device_found(w[1]))
            strcpy(found_devices[nfound++], w[1]);
    } else if (strcmp(op, "sysctl") == 0 && n == 4) {
        /* One write of the value and a newline, as echo's. */
        size_t len = strlen(w[3]);
        char *value = malloc(len + 2);
        int fd = value ? open(w[1], O_WRONLY | O_TRUNC | O_CLOEXEC) : -1;
        int ok = fd >= 0;
        if (ok) {
            memcpy(value, w[3], len);
            value[len] = '\n';
            ok = write(fd, value, len + 1) == (ssize_t)(len + 1);
        }
        if (fd >= 0 && close(fd) < 0)
            ok = 0;
        free(value);
        if (!ok)
            setup_error("sysctl %s=%s: cannot write %s", w[2], w[3], w[1]);
    } else if (strcmp(op, "ip") == 0 && n >= 2) {
        step_ip(w + 1, n - 1);
    } else if (strcmp(op, "wait-link") == 0 && n == 3 && (polls = poll_count(w[2])) >= 0 &&
               strlen(w[1]) < IF_NAMESIZE && !strchr(w[1], '/')) {
        static const char *const up[] = { "up\n", "unknown\n", NULL };
        char path[64];
        snprintf(path, sizeof path, "/sys/class/net/%s/operstate", w[1]);
        if (wait_state(path, up, polls) < 0)
            setup_error("%s did not come up", w[1]);
    } else if (strcmp(op, "wait-port") == 0 && n == 3 && (polls = poll_count(w[2])) >= 0) {
        if (find_port(w[1], polls) < 0)
            setup_error("no virtio port named %s", w[1]);
    } else {
        setup_error("%s line %u: cannot do '%s' with %d argument%s", setup_path, setup_line,
                    op, n - 1, n == 2 ? "" : "s");
    }
}

/* The index of a step's word that is the rest of the line (spaces and all), or -1. */
static int rest_word(const char *op)
{
    if (strcmp(op, "env") == 0)
        return 2;
    return strcmp(op, "device") == 0 || strcmp(op, "sysctl") == 0 ? 3 : -1;
}

/* Splits a line at single spaces into `w`; -1 for an empty word or too many. */
static int split_words(char *p, char **w, int *n)
{
    int rest = -1;
    for (*n = 0;;) {
        if (*n == SETUP_MAX_ARGS)
            return -1;
        w[(*n)++] = p;
        if (*n - 1 == rest)
            return 0;
        char *space = strchr(p, ' ');
        if (!space)
            return 0;
        *space = '\0';
        p = space + 1;
        if (*n == 1)
            rest = rest_word(w[0]);
        if ((*p == ' ' || *p == '\0') && *n != rest)
            return -1;
    }
}

/* Applies the set-up file, line by line; what fails is recorded and the rest goes on. */
static void run_setup(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *text = NULL;
    ssize_t len = -1;
    if (fd >= 0 && fstat(fd, &st) == 0 && (text = malloc((size_t)st.st_size + 1)))
        len = read(fd, text, (size_t)st.st_size);
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (len < 0) {
        setup_error("cannot read the set-up file %s: %s", path, strerror(e));
        free(text);
        return;
    }
    text[len] = '\0';
    char *next;
    for (char *line = text; *line; line = next) {
        setup_line++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen(line);
        char *w[SETUP_MAX_ARGS];
        int n;
        if (*line == '?') { /* ?DEV STEP: only if device DEV was found */
            char *guard = line + 1, *space = strchr(line, ' ');
            if (!space || space == guard) {
                setup_error("%s line %u: a guard without a device or a step", path,
                            setup_line);
                continue;
            }
            *space = '\0';
            line = space + 1;
            if (!device_found(guard))
                continue;
        }
        if (*line == '#' || *line == '\0')
            continue;
        if (split_words(line, w, &n) < 0)
            setup_error("%s line %u: words are separated by one space, at most %d", path,
                        setup_line, SETUP_MAX_ARGS);
        else
            setup_step(w, n);
    }
    free(text);
    if (nl_fd >= 0) {
        close(nl_fd);
        nl_fd = -1;
    }
}
/* ---- main ----------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: ns3-uml-agent [--setup FILE [--errors FILE]] [--port PATH | --fd N] "
                    "[--workdir DIR] [--umount DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "port", required_argument, NULL, 'p' },   { "fd", required_argument, NULL, 'f' },
        { "workdir", required_argument, NULL, 'w' }, { "umount", required_argument, NULL, 'u' },
        { "setup", required_argument, NULL, 's' },   { "errors", required_argument, NULL, 'e' },
        { NULL, 0, NULL, 0 },
    };
    const char *port = NULL;
    int fd = -1;
    int opt;
    is_init = getpid() == 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'p':
            port = optarg;
            break;
        case 'f':
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || v < 0 || v > 1 << 30)
                usage();
            fd = (int)v;
            break;
        case 'w':
            workdir = optarg;
            break;
        case 'u':
            umount_dir = optarg;
            break;
        case 's':
            setup_path = optarg;
            break;
        case 'e':
            errors_path = optarg;
            break;
        default:
            if (!is_init)
                usage();
        }
    }
    if (optind != argc && !is_init)
        usage();

    /* Descriptors 0-2 taken, so that no pipe of ours is one of them (dup2 in the child). */
    int spare;
    while ((spare = open("/dev/null", O_RDWR)) >= 0 && spare <= 2)
        ;
    if (spare > 2)
        close(spare);
    /* Before anything else: the set-up's children (an `ip` it does not know) get the
     * default signal dispositions, and READY comes after the set-up. */
    if (setup_path)
        run_setup(setup_path);
    if (!port)
        port = port_path[0] ? port_path : AGENT_PORT_DEVICE;
    /* A host gone mid-write is an EPIPE, not a death. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
        fatal("sigprocmask");
    sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sig_fd < 0)
        fatal("signalfd");
    if (fd >= 0) {
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            fatal("--fd");
        port_fd = fd;
    } else {
        port_fd = open(port, O_RDWR | O_CLOEXEC);
        if (port_fd < 0)
            fatal(port);
    }
    unsigned char ready[8];
    put_le(ready, now_ns(), 8);
    send_frame(AGENT_READY, 0, ready, sizeof ready);

    struct pollfd *pfds = NULL;
    size_t cap_pfds = 0;
    for (;;) {
        size_t need = 2 + 2 * ncmds, npfd = 0;
        if (need > cap_pfds) {
            struct pollfd *more = realloc(pfds, need * sizeof *pfds);
            if (!more)
                fatal("realloc");
            pfds = more;
            cap_pfds = need;
        }
        /* Pipes first, in command order, then the signalfd, then the port: output read in
         * this round goes out before an EXIT, and RUN may add commands only at the end. */
        for (size_t i = 0; i < ncmds; i++)
            for (int which = 0; which < 2; which++)
                pfds[npfd++] = (struct pollfd){ .fd = cmds[i].fd[which], .events = POLLIN };
        pfds[npfd++] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
        pfds[npfd++] = (struct pollfd){ .fd = port_fd, .events = POLLIN }; /* -1: ignored */
        if (poll(pfds, npfd, -1) < 0) {
            if (errno == EINTR)
                continue;
            fatal("poll");
        }
        size_t k = 0, ncmds_polled = ncmds;
        for (size_t i = 0; i < ncmds_polled; i++)
            for (int which = 0; which < 2; which++, k++)
                if (pfds[k].revents && cmds[i].fd[which] >= 0)
                    forward_pipe(&cmds[i], which);
        if (pfds[k++].revents)
            reap();
        if (pfds[k].revents && port_fd >= 0)
            read_port();
    }
}
