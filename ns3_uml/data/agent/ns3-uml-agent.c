/*
 * ns3-uml-agent: the guest's end of the command channel (docs/DESIGN.md section 7).
 *
 * Runs shell commands the host asks for and sends back their output, exit status and
 * start/end times, over the frames of agent-protocol.h on the agent's virtio-console port.
 * The guest's init execs it as PID 1, so it also reaps every orphan and powers the guest
 * off. One process, no threads, no timers: one poll() with an infinite timeout over the
 * port, a signalfd for SIGCHLD and the commands' pipes, so an idle agent adds no events to
 * the simulation.
 *
 * Usage: ns3-uml-agent [--port PATH | --fd N] [--workdir DIR] [--umount DIR]
 *   --port PATH    the port to open (default AGENT_PORT_DEVICE)
 *   --fd N         an already open descriptor instead (the host's tests: a socketpair)
 *   --workdir DIR  where commands run (default: the agent's working directory)
 *   --umount DIR   unmounted (after sync) before power-off
 *
 * Built static by ns3_uml/guest/agent.py: the guest runs the host's binaries over hostfs,
 * and a static binary needs none of the host's libraries and no dynamic loader.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

/* ---- main ----------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: ns3-uml-agent [--port PATH | --fd N] [--workdir DIR] "
                    "[--umount DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "port", required_argument, NULL, 'p' },   { "fd", required_argument, NULL, 'f' },
        { "workdir", required_argument, NULL, 'w' }, { "umount", required_argument, NULL, 'u' },
        { NULL, 0, NULL, 0 },
    };
    const char *port = AGENT_PORT_DEVICE;
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
