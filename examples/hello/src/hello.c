/*
 * hello: the example guest of the runsc sandbox.
 *
 * Prints a greeting, its pid, its arguments, $HOME, the contents of /etc/motd
 * and a sorted listing of the root directory. Everything it sees comes from
 * the sentry through wasi_snapshot_preview1: WASI has no getpid, so the pid is
 * read where Linux programs find it too, the /proc/self symlink of the
 * sandbox's procfs.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int print_motd(void) {
  FILE *f = fopen("/etc/motd", "r");
  if (f == NULL) {
    printf("cannot open /etc/motd: %s\n", strerror(errno));
    return -1;
  }
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    fwrite(buf, 1, n, stdout);
  }
  int failed = ferror(f);
  fclose(f);
  if (failed) {
    printf("cannot read /etc/motd\n");
    return -1;
  }
  return 0;
}

static int list_root(void) {
  DIR *dir = opendir("/");
  if (dir == NULL) {
    printf("cannot open /: %s\n", strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t count = 0, capacity = 0;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
      continue;
    if (count == capacity) {
      capacity = capacity ? capacity * 2 : 16;
      names = realloc(names, capacity * sizeof *names);
      if (names == NULL) {
        printf("out of memory\n");
        return -1;
      }
    }
    names[count++] = strdup(entry->d_name);
  }
  closedir(dir);
  qsort(names, count, sizeof *names, compare_names);
  printf("Listing of /:\n");
  for (size_t i = 0; i < count; i++) {
    printf("  %s\n", names[i]);
    free(names[i]);
  }
  free(names);
  return 0;
}

static void print_pid(void) {
  char pid[32];
  ssize_t n = readlink("/proc/self", pid, sizeof pid - 1);
  if (n < 0) {
    printf("pid: unknown (/proc/self: %s)\n", strerror(errno));
    return;
  }
  pid[n] = '\0';
  printf("pid: %s\n", pid);
}

int main(int argc, char **argv) {
  printf("Hello from WebAssembly in the runsc sandbox!\n");
  print_pid();
  for (int i = 0; i < argc; i++) {
    printf("argv[%d]=%s\n", i, argv[i]);
  }
  const char *home = getenv("HOME");
  printf("HOME=%s\n", home ? home : "(unset)");
  if (print_motd() != 0)
    return 1;
  if (list_root() != 0)
    return 1;
  return 0;
}
