/*
 * denv-spawn: the node runtime's process launcher.
 *
 * Why it exists: Node's child_process.spawn forks the whole agent. fork copies
 * the page tables of the calling process, so every program the runtime runs
 * (conmon, runc delete, unshare, ip, mount, umount) cost the agent's event loop
 * time in proportion to its resident size: about 1.4 ms at 44 MiB and 14 ms at
 * 244 MiB on the development VM, several times per env (docs/decisions.md).
 * This helper is a small long-lived child of the agent that starts programs
 * with posix_spawn (clone with CLONE_VM|CLONE_VFORK in glibc: no page-table
 * copy) and reports back over a pipe. It never runs a shell: it receives an
 * argv array and execs it.
 *
 * Protocol, on stdin/stdout, little-endian frames of <u32 length><payload>.
 * Request payload: NUL-terminated strings
 *   "1" (version), id, timeout_ms, flags, cwd ("" = inherit),
 *   outfile ("" = capture), n_env, env[n_env] ("K=V", override the helper's
 *   environment), n_argv, argv[n_argv]
 * flags: 1 = new session (setsid), 2 = fd 3 is a pipe whose first line (or
 *   everything until EOF) is the answer; the exit is not waited for,
 *   4 = stdout and stderr append to outfile instead of being captured,
 *   8 = no program: argv[0] is an existing empty file, and a forked child of
 *       the helper makes a new network namespace, bind-mounts it on that file
 *       (what `ip netns add` leaves behind) and sets its loopback up; it
 *       exits 0, or non-zero with the failing step on stderr. Three system
 *       calls instead of two programs (unshare(1), ip(8)) on every create.
 *   16 = no program: argv[0] is a netns handle; a forked child detaches its
 *       mount and removes the file (what `ip netns delete` does) and exits
 *       0, or non-zero with the failing step on stderr.
 * Response payload: a header line
 *   "<id> <state> <exit_code> <signal> <timed_out> <errno> <out_len> <err_len> <sync_len>\n"
 * followed by out, err and sync bytes. state: "exit" (exit_code or signal
 * set), "sync" (answered on fd 3), "error" (could not start: errno).
 *
 * A program still running at its timeout gets SIGKILL (the helper's own
 * child, by pid, before it is reaped). Output beyond 1 MiB per stream is
 * dropped. When stdin closes (the agent is gone) the helper stops taking
 * requests, waits for the programs it is still waiting for, and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_JOBS 1024
#define MAX_OUTPUT (1 << 20)
#define MAX_FRAME (4 << 20)
#define PIPE_GRACE_MS 2000 /* a grandchild that keeps the pipes open must not hold the answer */

enum { F_SETSID = 1, F_SYNC3 = 2, F_OUTFILE = 4, F_NETNS = 8, F_NETNS_DEL = 16 };

struct buf {
  char *p;
  size_t len, cap;
};

struct job {
  int used;
  char id[64];
  pid_t pid;
  int flags;
  int fd[3]; /* stdout, stderr, sync: -1 when closed */
  struct buf out[3];
  int64_t deadline, exited_at;
  int exited, status, timed_out, answered;
};

static struct job jobs[MAX_JOBS];
static struct buf in;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what) {
  fprintf(stderr, "denv-spawn: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void buf_add(struct buf *b, const char *p, size_t n, size_t cap_limit) {
  if (b->len >= cap_limit) return;
  if (n > cap_limit - b->len) n = cap_limit - b->len;
  if (b->len + n > b->cap) {
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + n) c *= 2;
    char *q = realloc(b->p, c);
    if (!q) die("realloc");
    b->p = q;
    b->cap = c;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      exit(errno == EPIPE ? 0 : 2); /* the agent is gone */
    }
    p += w;
    n -= (size_t)w;
  }
}

static void respond(const char *id, const char *state, int code, int sig, int timed_out, int err, struct buf *o) {
  static const struct buf none[3];
  if (!o) o = (struct buf *)none;
  char head[256];
  int h = snprintf(head, sizeof head, "%s %s %d %d %d %d %zu %zu %zu\n", id, state, code, sig, timed_out, err, o[0].len, o[1].len, o[2].len);
  uint32_t len = (uint32_t)h + (uint32_t)(o[0].len + o[1].len + o[2].len);
  unsigned char le[4] = {len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, (len >> 24) & 0xff};
  write_all(1, (const char *)le, 4);
  write_all(1, head, (size_t)h);
  for (int i = 0; i < 3; i++)
    if (o[i].len) write_all(1, o[i].p, o[i].len);
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void finish(struct job *j) {
  for (int i = 0; i < 3; i++) {
    close_fd(&j->fd[i]);
    free(j->out[i].p);
  }
  memset(j, 0, sizeof *j);
  j->fd[0] = j->fd[1] = j->fd[2] = -1;
}

/* Answer a job whose program has exited (and whose pipes are drained or past the grace). */
static void answer_exit(struct job *j) {
  int code = -1, sig = 0;
  if (WIFEXITED(j->status)) code = WEXITSTATUS(j->status);
  else if (WIFSIGNALED(j->status)) sig = WTERMSIG(j->status);
  if (!j->answered) respond(j->id, "exit", code, sig, j->timed_out, 0, j->out);
  finish(j);
}

/* The executable for argv0: as given when it has a slash, else the first match on PATH. */
static const char *resolve(const char *argv0, const char *path_env, char *out, size_t outsz) {
  if (strchr(argv0, '/')) return argv0;
  const char *p = path_env ? path_env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (*p) {
    const char *e = strchr(p, ':');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n && n + 1 + strlen(argv0) < outsz) {
      memcpy(out, p, n);
      out[n] = '/';
      strcpy(out + n + 1, argv0);
      struct stat st;
      if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return out;
    }
    if (!e) break;
    p = e + 1;
  }
  return NULL;
}

/* Split a request payload into its NUL-terminated fields; NULL when malformed. */
static char **fields(char *p, size_t n, size_t *count) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\0') k++;
  if (!k || p[n - 1] != '\0') return NULL;
  char **f = calloc(k, sizeof *f);
  if (!f) die("calloc");
  size_t at = 0;
  for (size_t i = 0; i < k; i++) {
    f[i] = p + at;
    at += strlen(p + at) + 1;
  }
  *count = k;
  return f;
}

/* The child of a F_NETNS request: returns its exit code (the step that failed is on stderr). */
static int make_netns(const char *handle) {
  if (unshare(CLONE_NEWNET) < 0) {
    fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", strerror(errno));
    return 10;
  }
  if (mount("/proc/self/ns/net", handle, NULL, MS_BIND, NULL) < 0) {
    fprintf(stderr, "mount --bind /proc/self/ns/net %s: %s\n", handle, strerror(errno));
    return 11;
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq r;
  memset(&r, 0, sizeof r);
  strcpy(r.ifr_name, "lo");
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &r) < 0 || (r.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &r) < 0)) {
    fprintf(stderr, "set lo up: %s\n", strerror(errno));
    return 12; /* the handle stays mounted: the caller deletes the netns on any failure */
  }
  return 0;
}

/* The child of a F_NETNS_DEL request, like `ip netns delete`: detach the handle's mount (none there is
 * fine), then remove the file; returns its exit code (the failing step on stderr). */
static int delete_netns(const char *handle) {
  if (umount2(handle, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
    fprintf(stderr, "umount2 %s: %s\n", handle, strerror(errno));
    return 20;
  }
  if (unlink(handle) < 0 && errno != ENOENT) {
    fprintf(stderr, "Cannot remove namespace file \"%s\": %s\n", handle, strerror(errno));
    return 21;
  }
  return 0;
}

static void start(char *payload, size_t n) {
  size_t k;
  char **f = fields(payload, n, &k);
  /* version, id, timeout, flags, cwd, outfile, n_env */
  if (!f || k < 8 || strcmp(f[0], "1") != 0) {
    respond(f && k > 1 ? f[1] : "?", "error", -1, 0, 0, EINVAL, NULL);
    free(f);
    return;
  }
  const char *id = f[1];
  long timeout = strtol(f[2], NULL, 10);
  int flags = (int)strtol(f[3], NULL, 10);
  const char *cwd = f[4], *outfile = f[5];
  size_t nenv = strtoul(f[6], NULL, 10);
  if (7 + nenv + 1 > k) goto bad;
  size_t nargv = strtoul(f[7 + nenv], NULL, 10);
  if (nargv < 1 || 8 + nenv + nargv != k || strlen(id) >= sizeof jobs[0].id) goto bad;
  char **envs = f + 7, **argv = f + 8 + nenv;

  struct job *j = NULL;
  for (int i = 0; i < MAX_JOBS; i++)
    if (!jobs[i].used) {
      j = &jobs[i];
      break;
    }
  if (!j) {
    respond(id, "error", -1, 0, 0, EAGAIN, NULL);
    free(f);
    return;
  }

  /* environment: the helper's, with the overrides replacing same-named entries */
  size_t nbase = 0;
  while (environ[nbase]) nbase++;
  char **envp = calloc(nbase + nenv + 1, sizeof *envp);
  char **argvz = calloc(nargv + 1, sizeof *argvz);
  if (!envp || !argvz) die("calloc");
  size_t e = 0;
  const char *path_env = getenv("PATH");
  for (size_t i = 0; i < nbase; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int overridden = 0;
    for (size_t o = 0; o < nenv; o++)
      if (strncmp(envs[o], environ[i], kl) == 0 && envs[o][kl] == '=') overridden = 1;
    if (!overridden) envp[e++] = environ[i];
  }
  for (size_t o = 0; o < nenv; o++) {
    envp[e++] = envs[o];
    if (strncmp(envs[o], "PATH=", 5) == 0) path_env = envs[o] + 5;
  }
  for (size_t i = 0; i < nargv; i++) argvz[i] = argv[i];

  char pathbuf[4096];
  const char *file = (flags & (F_NETNS | F_NETNS_DEL)) ? argv[0] : resolve(argv[0], path_env, pathbuf, sizeof pathbuf);
  int pout[2] = {-1, -1}, perr[2] = {-1, -1}, psync[2] = {-1, -1};
  int err = 0, ofd = -1, nullfd = -1;
  if (!file) {
    err = ENOENT;
    goto out;
  }
  if ((nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    err = errno;
    goto out;
  }
  if (flags & F_OUTFILE) {
    if ((ofd = open(outfile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
      err = errno;
      goto out;
    }
  } else if (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
    err = errno;
    goto out;
  }
  if ((flags & F_SYNC3) && pipe2(psync, O_CLOEXEC) < 0) {
    err = errno;
    goto out;
  }

  pid_t pid;
  if (flags & (F_NETNS | F_NETNS_DEL)) {
    /* the helper is single-threaded and small: a plain fork is cheap here */
    pid = fork();
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, NULL);
      dup2(nullfd, 0);
      dup2(pout[1], 1);
      dup2(perr[1], 2);
      _exit((flags & F_NETNS) ? make_netns(file) : delete_netns(file));
    }
    err = pid < 0 ? errno : 0;
    goto out;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  posix_spawn_file_actions_adddup2(&fa, nullfd, 0);
  posix_spawn_file_actions_adddup2(&fa, ofd >= 0 ? ofd : pout[1], 1);
  posix_spawn_file_actions_adddup2(&fa, ofd >= 0 ? ofd : perr[1], 2);
  if (flags & F_SYNC3) posix_spawn_file_actions_adddup2(&fa, psync[1], 3);
  if (*cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  short af = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (flags & F_SETSID) af |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&at, af);
  err = posix_spawn(&pid, file, &fa, &at, argvz, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);

out:
  close_fd(&nullfd);
  close_fd(&ofd);
  close_fd(&pout[1]);
  close_fd(&perr[1]);
  close_fd(&psync[1]);
  if (err) {
    close_fd(&pout[0]);
    close_fd(&perr[0]);
    close_fd(&psync[0]);
    respond(id, "error", -1, 0, 0, err, NULL);
  } else {
    memset(j, 0, sizeof *j);
    j->used = 1;
    strcpy(j->id, id);
    j->pid = pid;
    j->flags = flags;
    j->fd[0] = pout[0];
    j->fd[1] = perr[0];
    j->fd[2] = psync[0];
    j->deadline = now_ms() + (timeout > 0 ? timeout : 30000);
  }
  free(envp);
  free(argvz);
  free(f);
  return;
bad:
  respond(id, "error", -1, 0, 0, EINVAL, NULL);
  free(f);
}

/* Complete every request whole in the input buffer. */
static void take_requests(void) {
  size_t at = 0;
  while (in.len - at >= 4) {
    const unsigned char *l = (const unsigned char *)in.p + at;
    uint32_t n = (uint32_t)l[0] | (uint32_t)l[1] << 8 | (uint32_t)l[2] << 16 | (uint32_t)l[3] << 24;
    if (n == 0 || n > MAX_FRAME) {
      fprintf(stderr, "denv-spawn: bad frame length %u\n", n);
      exit(2);
    }
    if (in.len - at - 4 < n) break;
    start(in.p + at + 4, n);
    at += 4 + n;
  }
  memmove(in.p, in.p + at, in.len - at);
  in.len -= at;
}

static struct job *job_of(pid_t pid) {
  for (int i = 0; i < MAX_JOBS; i++)
    if (jobs[i].used && jobs[i].pid == pid) return &jobs[i];
  return NULL;
}

static void reap(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    struct job *j = job_of(pid);
    if (!j) continue;
    j->exited = 1;
    j->status = st;
    j->exited_at = now_ms();
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0) die("sigprocmask");
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");
  for (int i = 0; i < MAX_JOBS; i++) jobs[i].fd[0] = jobs[i].fd[1] = jobs[i].fd[2] = -1;
  int stdin_open = 1;
  static struct pollfd pfd[2 + 3 * MAX_JOBS];
  static struct job *owner[2 + 3 * MAX_JOBS];
  static int which[2 + 3 * MAX_JOBS];
  char chunk[65536];

  for (;;) {
    int64_t now = now_ms();
    int busy = 0;
    int64_t wake = -1;
    for (int i = 0; i < MAX_JOBS; i++) {
      struct job *j = &jobs[i];
      if (!j->used) continue;
      int sync_done = (j->flags & F_SYNC3) && j->fd[2] < 0;
      if (!j->answered && sync_done) {
        /* answered by fd 3 (or its EOF); the program itself is reaped later */
        int code = j->exited && WIFEXITED(j->status) ? WEXITSTATUS(j->status) : -1;
        respond(j->id, "sync", code, 0, j->timed_out, 0, j->out);
        j->answered = 1;
      }
      if (j->exited && (j->flags & F_SYNC3) && !j->answered) {
        /* the program exited (conmon does, once it has daemonised) but fd 3 is still open in what it
           left behind: the answer is still to come on fd 3, bounded by the timeout, not by the grace */
        if (now >= j->deadline) {
          close_fd(&j->fd[2]);
          respond(j->id, "sync", -1, 0, 1, 0, j->out);
          j->answered = 1;
        } else if (wake < 0 || j->deadline < wake) {
          wake = j->deadline;
        }
        busy = 1;
        continue;
      }
      if (j->exited) {
        int drained = j->fd[0] < 0 && j->fd[1] < 0 && j->fd[2] < 0;
        if (drained || now >= j->exited_at + PIPE_GRACE_MS) {
          answer_exit(j);
          continue;
        }
        int64_t w = j->exited_at + PIPE_GRACE_MS;
        if (wake < 0 || w < wake) wake = w;
      } else if (!j->timed_out) {
        if (now >= j->deadline && !j->answered) {
          kill(j->pid, SIGKILL); /* our own child, not yet reaped: the pid is still its */
          j->timed_out = 1;
          /* a daemonised grandchild may hold fd 3 open: answer now, without waiting for it */
          if (j->flags & F_SYNC3) {
            close_fd(&j->fd[2]);
            respond(j->id, "sync", -1, 0, 1, 0, j->out);
            j->answered = 1;
          }
          busy = 1;
          continue;
        } else if (!j->answered && (wake < 0 || j->deadline < wake)) {
          wake = j->deadline;
        }
      }
      busy = 1;
    }
    if (!stdin_open && !busy) return 0;

    int n = 0;
    pfd[n] = (struct pollfd){.fd = sfd, .events = POLLIN};
    owner[n++] = NULL;
    if (stdin_open) {
      pfd[n] = (struct pollfd){.fd = 0, .events = POLLIN};
      owner[n++] = NULL;
    }
    for (int i = 0; i < MAX_JOBS; i++)
      for (int s = 0; s < 3; s++)
        if (jobs[i].used && jobs[i].fd[s] >= 0) {
          pfd[n] = (struct pollfd){.fd = jobs[i].fd[s], .events = POLLIN};
          owner[n] = &jobs[i];
          which[n++] = s;
        }
    int timeout = wake < 0 ? -1 : (int)(wake > now ? wake - now : 0);
    int r = poll(pfd, (nfds_t)n, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    for (int i = 0; i < n; i++) {
      if (!pfd[i].revents) continue;
      if (pfd[i].fd == sfd) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) > 0) {
        }
        reap();
      } else if (!owner[i]) {
        ssize_t got = read(0, chunk, sizeof chunk);
        if (got > 0) {
          buf_add(&in, chunk, (size_t)got, (size_t)-1);
          take_requests();
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          stdin_open = 0;
        }
      } else {
        struct job *j = owner[i];
        int s = which[i];
        ssize_t got = read(j->fd[s], chunk, sizeof chunk);
        if (got > 0) {
          buf_add(&j->out[s], chunk, (size_t)got, MAX_OUTPUT);
          if (s == 2 && memchr(chunk, '\n', (size_t)got)) close_fd(&j->fd[2]);
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          close_fd(&j->fd[s]);
        }
      }
    }
    reap(); /* a child that exited between signalfd reads */
  }
}
