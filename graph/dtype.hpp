// Element types of values: f32, bf16 (stored as the top 16 bits of an f32), i32.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace sy {

enum class DType : uint8_t { f32, bf16, i32 };

inline constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
  }
  return "?";
}

inline std::optional<DType> dtype_from_name(std::string_view s) {
  if (s == "f32") return DType::f32;
  if (s == "bf16") return DType::bf16;
  if (s == "i32") return DType::i32;
  return std::nullopt;
}

inline constexpr int64_t dtype_bytes(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i32: return 4;
  }
  return 0;
}

inline constexpr bool is_float(DType t) { return t == DType::f32 || t == DType::bf16; }

// bf16 <-> f32 with round-to-nearest-even (NaN stays NaN).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// The value a number takes once stored in dtype t (used by reference kernels, which compute in
// double and round on store so they reproduce the storage precision of the fast kernels).
inline double round_to(DType t, double x) {
  switch (t) {
    case DType::f32: return static_cast<double>(static_cast<float>(x));
    case DType::bf16: return static_cast<double>(bf16_to_f32(f32_to_bf16(static_cast<float>(x))));
    case DType::i32: return x;
  }
  return x;
}

}  // namespace sy
