{
  # N-API addon over the distribution's libbpf (Debian: libbpf-dev, libelf-dev,
  # zlib). Built by `npm run build:native` (node-gyp rebuild --directory native).
  "targets": [
    {
      "target_name": "kmesh_bpf",
      "sources": ["src/addon.cc", "src/bpf_probe.cc", "src/netns.cc", "src/sock_diag.cc"],
      # ../bpf/include: struct conn_record, defined once for both sides.
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../bpf/include"],
      # Header-only use of node-addon-api with C++ exceptions (errors surface as
      # JS Errors). Not its gyp target: that would generate build files under
      # native/node_modules/ outside native/build.
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lbpf", "-lelf", "-lz", "-lpthread"]
    }
  ]
}
