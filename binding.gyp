{
  "targets": [
    {
      "target_name": "fuse_kernel",
      "sources": ["native/fuse_kernel.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl"]
    }
  ]
}
