{
  "targets": [
    {
      "target_name": "fuse_reader",
      "sources": ["native/fuse_reader.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl"]
    }
  ]
}
