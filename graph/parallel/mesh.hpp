// A logical mesh of devices: named axes with sizes, written "data:64,model:16". Devices are
// numbered row-major over the axes (the last axis varies fastest). The executor backs each axis
// with an MPI sub-communicator; the simulator maps each onto torus axes of a HardwareSpec.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

// At most this many axes (shardings are stored as small fixed arrays, one slot per axis).
inline constexpr size_t kMaxMeshAxes = 8;

// At most this many devices in a mesh: the executor backs a mesh with MPI ranks, numbered with
// int (MPI 4.0 standard, section 6.4.1: MPI_Comm_size returns an int), and it keeps
// Mesh::devices() and every product of axis sizes within 64 bits.
inline constexpr int64_t kMaxMeshDevices = 2147483647;  // INT_MAX

struct MeshAxis {
  std::string name;  // [a-z_][a-z0-9_]*
  int64_t size = 1;  // >= 1
  bool operator==(const MeshAxis&) const = default;
};

struct Mesh {
  std::vector<MeshAxis> axes;

  int64_t devices() const;
  std::optional<size_t> axis_index(std::string_view name) const;
  // The device's coordinate on each axis (row-major numbering).
  std::vector<int64_t> coords(int64_t device) const;
  int64_t device_at(const std::vector<int64_t>& coords) const;
  bool operator==(const Mesh&) const = default;
};

// "data:64,model:16" -> Mesh. Throws InputError naming the bad entry and what is allowed
// (NAME:SIZE pairs separated by commas, names unique, sizes positive integers, at most
// kMaxMeshAxes axes and kMaxMeshDevices devices).
Mesh parse_mesh(std::string_view text);

// "data:64,model:16"
std::string to_string(const Mesh& m);

}  // namespace sy
