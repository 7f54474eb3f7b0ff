/*
 * raw-floor: the cheapest possible "disposable env", used as the floor in
 * `npm run bench`. Per iteration: create one cgroup directory in each hierarchy
 * given on the command line, clone() a child with all seven namespace flags,
 * move it into the cgroups before it runs anything, let it exec /bin/true,
 * reap it, and remove the cgroups. Prints one JSON object with the latency of
 * every iteration in nanoseconds.
 *
 * usage: raw-floor ITERATIONS CGROUP_PARENT_DIR [CGROUP_PARENT_DIR...]
 * Each CGROUP_PARENT_DIR must exist; the program creates and removes
 * <dir>/raw-floor-<pid>-<i> only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NS_FLAGS (CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWCGROUP)
#define STACK_SIZE (256 * 1024)
#define MAX_HIERARCHIES 16

static int sync_pipe[2];

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int child_main(void *arg) {
  (void)arg;
  char go;
  close(sync_pipe[1]);
  /* wait until the parent has placed us in the cgroups */
  if (read(sync_pipe[0], &go, 1) != 1) _exit(125);
  char *const argv[] = {"/bin/true", NULL};
  execv(argv[0], argv);
  _exit(127);
}

static int write_pid(const char *dir, pid_t pid) {
  char path[4200], buf[32];
  snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int n = snprintf(buf, sizeof buf, "%d", (int)pid);
  int rc = write(fd, buf, (size_t)n) == n ? 0 : -1;
  close(fd);
  return rc;
}

static int remove_dir(const char *dir) {
  for (int attempt = 0; attempt < 50; attempt++) {
    if (rmdir(dir) == 0 || errno == ENOENT) return 0;
    if (errno != EBUSY) return -1;
    usleep(1000 << (attempt < 6 ? attempt : 6));
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s ITERATIONS CGROUP_PARENT_DIR...\n", argv[0]);
    return 2;
  }
  int iterations = atoi(argv[1]);
  int nh = argc - 2;
  if (iterations <= 0 || nh > MAX_HIERARCHIES) {
    fprintf(stderr, "raw-floor: bad arguments\n");
    return 2;
  }
  char *stack = malloc(STACK_SIZE);
  if (!stack) return 1;
  printf("{\"iterations\":%d,\"ns\":[", iterations);
  for (int i = 0; i < iterations; i++) {
    char dirs[MAX_HIERARCHIES][4096];
    long long t0 = now_ns();
    for (int h = 0; h < nh; h++) {
      snprintf(dirs[h], sizeof dirs[h], "%s/raw-floor-%d-%d", argv[2 + h], (int)getpid(), i);
      if (mkdir(dirs[h], 0755) != 0) {
        fprintf(stderr, "raw-floor: mkdir %s: %s\n", dirs[h], strerror(errno));
        for (int k = 0; k < h; k++) remove_dir(dirs[k]);
        return 1;
      }
    }
    if (pipe2(sync_pipe, O_CLOEXEC) != 0) return 1;
    pid_t pid = clone(child_main, stack + STACK_SIZE, NS_FLAGS | SIGCHLD, NULL);
    if (pid < 0) {
      fprintf(stderr, "raw-floor: clone: %s\n", strerror(errno));
      for (int h = 0; h < nh; h++) remove_dir(dirs[h]);
      return 1;
    }
    close(sync_pipe[0]);
    int ok = 1;
    for (int h = 0; h < nh; h++)
      if (write_pid(dirs[h], pid) != 0) ok = 0;
    if (ok) (void)!write(sync_pipe[1], "g", 1);
    close(sync_pipe[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    for (int h = 0; h < nh; h++) remove_dir(dirs[h]);
    long long t1 = now_ns();
    if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "raw-floor: iteration %d failed (status %d)\n", i, status);
      return 1;
    }
    printf("%s%lld", i ? "," : "", t1 - t0);
  }
  printf("]}\n");
  free(stack);
  return 0;
}
