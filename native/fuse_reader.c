// The kernel engine's request reader as a plain thread (src/fs/kernel/device.ts says why a thread):
// it reads /dev/fuse with blocking read(2), one request per read, and hands each request to the
// event loop through a thread-safe function. A Node worker does the same job, but it boots a whole
// JavaScript runtime first (100+ ms of CPU on a small machine, in every mount's start); this
// thread costs nothing to start. Built by `npm install` (binding.gyp); without it the worker runs.
#define _GNU_SOURCE // pthread_setname_np
#include <dlfcn.h>
#include <errno.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
  return exports;
}
