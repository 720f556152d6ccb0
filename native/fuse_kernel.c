// The kernel engine's native helpers (src/fs/kernel/addon.ts loads them; without them, slower
// fallbacks in JavaScript do the same jobs). Built by `npm install` (binding.gyp).
//
// - start(): the request reader as a plain thread (src/fs/kernel/reader-thread.ts says why a
//   thread). It reads /dev/fuse with blocking read(2), one request per read, and hands each request
//   to the event loop through a thread-safe function. A Node worker does the same job, but it boots
//   a whole JavaScript runtime first (100+ ms of CPU on a small machine, in every mount's start).
// - mount(): mount(2) itself, where Node could only spawn mount(8) (its spawn() alone holds the
//   event loop ~10 ms, and mount(8) takes ~5 ms more).
// - spawnWatchdog(): starts the process that detaches the mount if this one dies, with
//   posix_spawn (vfork: no copy of the server's page tables), and reaps it from a thread.
#define _GNU_SOURCE // pthread_setname_np, POSIX_SPAWN_SETSID
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREAD_NAME "fuse-reader"

// Shared by the thread and the thread-safe function. Node deletes the function when its environment
// shuts down (the process exits as soon as the event loop is idle, since the function is unref'd),
// whether or not the thread still uses it: the finalizer marks it gone under `lock`, and the thread
// uses it only under `lock` while it is not gone. Whichever of the two lets go last frees this.
typedef struct {
  int fd;
  size_t buffer_bytes;
  napi_threadsafe_function deliver;
  pthread_mutex_t lock;
  int deliver_gone; // set by the finalizer: `deliver` is deleted right after it returns
  int owners;       // the thread and the thread-safe function
} reader;

static void let_go(reader *r) {
  pthread_mutex_lock(&r->lock);
  int last = --r->owners == 0;
  pthread_mutex_unlock(&r->lock);
  if (!last) return;
  pthread_mutex_destroy(&r->lock);
  free(r);
}

// One request (bytes > 0), or the end of reading: 0 for end of file, else -errno.
typedef struct {
  ssize_t bytes;
  uint8_t data[];
} message;

// False once the event loop's side is gone (its environment is shutting down): reading stops.
static int post(reader *r, message *m) {
  pthread_mutex_lock(&r->lock);
  // The queue is unbounded (size 0), so a blocking call never waits with the lock held.
  int posted = !r->deliver_gone && napi_call_threadsafe_function(r->deliver, m, napi_tsfn_blocking) == napi_ok;
  pthread_mutex_unlock(&r->lock);
  if (!posted) free(m);
  return posted;
}

static message *new_message(ssize_t bytes) {
  message *m = malloc(sizeof(message) + (bytes > 0 ? (size_t)bytes : 0));
  if (m == NULL) abort(); // as node does when it cannot allocate
  m->bytes = bytes;
  return m;
}

static void *read_requests(void *arg) {
  reader *r = arg;
  pthread_setname_np(pthread_self(), THREAD_NAME); // ps -L, top -H, and the tests find it so
  uint8_t *buffer = malloc(r->buffer_bytes);
  if (buffer == NULL) abort();
  for (;;) {
    ssize_t n = read(r->fd, buffer, r->buffer_bytes);
    if (n < 0) {
      // ENOENT: a request was interrupted before it was read; EINTR/EAGAIN: read again.
      if (errno == ENOENT || errno == EINTR || errno == EAGAIN) continue;
      post(r, new_message(-(ssize_t)errno)); // ENODEV: unmounted. Anything else ends serving too.
      break;
    }
    message *m = new_message(n);
    if (n > 0) memcpy(m->data, buffer, (size_t)n);
    if (!post(r, m) || n == 0) break;
  }
  free(buffer);
  pthread_mutex_lock(&r->lock);
  if (!r->deliver_gone) napi_release_threadsafe_function(r->deliver, napi_tsfn_release);
  pthread_mutex_unlock(&r->lock);
  let_go(r);
  return NULL;
}

static const char *errno_name(int e) {
  switch (e) {
  case ENODEV: return "ENODEV";
  case EBADF: return "EBADF";
  case EINVAL: return "EINVAL";
  case EIO: return "EIO";
  case EPERM: return "EPERM";
  case ENOMEM: return "ENOMEM";
  case ENOENT: return "ENOENT";
  case ENOTDIR: return "ENOTDIR";
  case EBUSY: return "EBUSY";
  case EACCES: return "EACCES";
  default: return NULL;
  }
}

// On the event loop: a request as a Buffer, or the reason reading ended as a string.
static void call_js(napi_env env, napi_value callback, void *context, void *data) {
  message *m = data;
  if (env != NULL && callback != NULL) {
    napi_value argument, undefined;
    if (m->bytes > 0) {
      void *copy;
      napi_create_buffer_copy(env, (size_t)m->bytes, m->data, &copy, &argument);
    } else {
      char reason[32];
      const char *name = m->bytes == 0 ? "EOF" : errno_name((int)-m->bytes);
      if (name == NULL) snprintf(reason, sizeof reason, "errno %d", (int)-m->bytes), name = reason;
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &argument);
    }
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, callback, 1, &argument, NULL);
  }
  free(m);
}

// On the event loop, when the function is released by the thread or its environment shuts down.
static void finalize(napi_env env, void *data, void *hint) {
  reader *r = data;
  pthread_mutex_lock(&r->lock);
  r->deliver_gone = 1;
  pthread_mutex_unlock(&r->lock);
  let_go(r);
}

// start(fd, bufferBytes, onMessage): starts the thread. It ends by itself when the device does.
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  uint32_t buffer_bytes;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &buffer_bytes) != napi_ok || fd < 0 || buffer_bytes < 4096) {
    napi_throw_type_error(env, NULL, "start(fd, bufferBytes >= 4096, onMessage)");
    return NULL;
  }
  reader *r = malloc(sizeof(reader));
  if (r == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  r->fd = fd;
  r->buffer_bytes = buffer_bytes;
  r->deliver_gone = 0;
  r->owners = 2;
  pthread_mutex_init(&r->lock, NULL);
  napi_create_string_utf8(env, "fuse request reader", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, r, finalize, NULL, call_js, &r->deliver) !=
      napi_ok) {
    pthread_mutex_destroy(&r->lock);
    free(r);
    napi_throw_error(env, NULL, "cannot create the thread-safe function");
    return NULL;
  }
  // The mount's own handles keep the process alive, not this thread.
  napi_unref_threadsafe_function(env, r->deliver);
  pthread_t thread;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  int failed = pthread_create(&thread, &attributes, read_requests, r);
  pthread_attr_destroy(&attributes);
  if (failed) {
    let_go(r); // the thread's share; the finalizer frees the rest
    napi_release_threadsafe_function(r->deliver, napi_tsfn_abort);
    napi_throw_error(env, NULL, strerror(failed));
    return NULL;
  }
  return NULL;
}

// A JavaScript string argument as a malloc'd C string (NULL, with an exception thrown, if it is not one).
static char *string_arg(napi_env env, napi_value value, const char *what) {
  size_t length;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  char *text = malloc(length + 1);
  if (text == NULL) abort();
  napi_get_value_string_utf8(env, value, text, length + 1, &length);
  if (strlen(text) != length) { // an embedded NUL would cut the string short
    free(text);
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  return text;
}

// An Error with code = "E..." (as Node's own system errors have) and the errno's message.
static void throw_errno(napi_env env, int e, const char *what) {
  const char *name = errno_name(e);
  char code[32], message[256];
  if (name == NULL) snprintf(code, sizeof code, "errno %d", e), name = code;
  snprintf(message, sizeof message, "%s: %s", what, strerror(e));
  napi_throw_error(env, name, message);
}

// mount(source, target, fstype, data): mount(2), read-only, nosuid, nodev. Throws on failure.
static napi_value do_mount(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, data)");
    return NULL;
  }
  char *args[4] = {NULL, NULL, NULL, NULL};
  for (int i = 0; i < 4; i++) {
    args[i] = string_arg(env, argv[i], "mount(source, target, fstype, data): strings without NUL");
    if (args[i] == NULL) break;
  }
  if (args[3] != NULL && mount(args[0], args[1], args[2], MS_RDONLY | MS_NOSUID | MS_NODEV, args[3]) != 0)
    throw_errno(env, errno, "mount");
  for (int i = 0; i < 4; i++) free(args[i]);
  return NULL;
}

static void *reap(void *arg) {
  pid_t pid = (pid_t)(intptr_t)arg;
  pthread_setname_np(pthread_self(), "watchdog-reaper");
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return NULL;
}

// A JavaScript array of 1..max strings as a NULL-terminated malloc'd array (NULL, with an exception
// thrown, if it is not one). free_strings() frees it.
static char **strings_arg(napi_env env, napi_value array, uint32_t min, uint32_t max, const char *what) {
  uint32_t count = 0;
  bool is_array = false;
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, array, &count) != napi_ok || count < min || count > max) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  char **strings = calloc(count + 1, sizeof(char *));
  if (strings == NULL) abort();
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    napi_get_element(env, array, i, &item);
    strings[i] = string_arg(env, item, what);
    if (strings[i] == NULL) {
      for (uint32_t j = 0; j < i; j++) free(strings[j]);
      free(strings);
      return NULL;
    }
  }
  return strings;
}

static void free_strings(char **strings) {
  if (strings == NULL) return;
  for (char **s = strings; *s != NULL; s++) free(*s);
  free(strings);
}

// spawnWatchdog(argv, envp): runs argv (argv[0] a path) with the environment envp ("NAME=value"
// strings: not ours, which holds credentials), in a session of its own, its stdin the read end of a
// pipe and its stdout and stderr /dev/null, with default signal handling. Returns the pipe's write
// end: the watchdog sees end of file when this process dies (or closes it). A thread reaps it.
static napi_value spawn_watchdog(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "spawnWatchdog(argv: string[], envp: string[])");
    return NULL;
  }
  char **child_argv = strings_arg(env, argv[0], 1, 64, "spawnWatchdog(argv): 1 to 64 strings without NUL");
  char **child_envp = child_argv == NULL ? NULL : strings_arg(env, argv[1], 0, 64, "spawnWatchdog(envp): up to 64 strings without NUL");
  int pipe_fds[2] = {-1, -1};
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  sigset_t none, all;
  if (child_envp != NULL) {
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
      throw_errno(env, errno, "pipe");
    } else {
      posix_spawn_file_actions_init(&actions);
      posix_spawn_file_actions_adddup2(&actions, pipe_fds[0], 0);
      posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
      posix_spawn_file_actions_adddup2(&actions, 1, 2);
      posix_spawnattr_init(&attributes);
      sigemptyset(&none);
      sigfillset(&all);
      posix_spawnattr_setsigmask(&attributes, &none);
      posix_spawnattr_setsigdefault(&attributes, &all); // Node ignores SIGPIPE; exec would keep that
      posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
      pid_t pid;
      int failed = posix_spawn(&pid, child_argv[0], &actions, &attributes, child_argv, child_envp);
      posix_spawn_file_actions_destroy(&actions);
      posix_spawnattr_destroy(&attributes);
      close(pipe_fds[0]);
      if (failed) {
        close(pipe_fds[1]);
        throw_errno(env, failed, "spawn watchdog");
      } else {
        pthread_t thread;
        pthread_attr_t thread_attributes;
        pthread_attr_init(&thread_attributes);
        pthread_attr_setdetachstate(&thread_attributes, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&thread_attributes, 64 * 1024);
        // Without the thread the watchdog would stay a zombie until this process exits: no harm.
        pthread_create(&thread, &thread_attributes, reap, (void *)(intptr_t)pid);
        pthread_attr_destroy(&thread_attributes);
        napi_create_int32(env, pipe_fds[1], &result);
      }
    }
  }
  free_strings(child_argv);
  free_strings(child_envp);
  return result;
}

// Node unloads an addon when the last worker that loaded it ends, and a reader thread may still be
// running this library's code then (blocked in read(2) until its device ends): keep it loaded.
static void stay_loaded(void) {
  Dl_info self;
  if (dladdr((void *)stay_loaded, &self) && self.dli_fname != NULL) dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

NAPI_MODULE_INIT() {
  stay_loaded();
  napi_value fn;
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, start, NULL, &fn);
  napi_set_named_property(env, exports, "start", fn);
  napi_create_function(env, "mount", NAPI_AUTO_LENGTH, do_mount, NULL, &fn);
  napi_set_named_property(env, exports, "mount", fn);
  napi_create_function(env, "spawnWatchdog", NAPI_AUTO_LENGTH, spawn_watchdog, NULL, &fn);
  napi_set_named_property(env, exports, "spawnWatchdog", fn);
  return exports;
}
