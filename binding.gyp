{
  "targets": [
    {
      "target_name": "brickd_native",
      "sources": [
        "native/addon.cc",
        "native/common/errors.cc",
        "native/checksum/crc32c.h",
        "native/checksum/crc32c.cc",
        "native/checksum/checksum_napi.cc",
        "native/device/device.cc",
        "native/device/device_napi.cc",
        "native/mount/mount.cc",
        "native/mount/mount_napi.cc",
        "native/brickio/brickio.cc",
        "native/brickio/brickio_napi.cc",
        "native/socket/socket_napi.cc",
        "native/memory/iomem.h",
        "native/memory/iomem.cc",
        "native/memory/memory_napi.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++20", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-fexceptions"],
      "libraries": ["-lblkid"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
