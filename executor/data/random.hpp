// Deterministic randomness and hashing for the data pipeline: the same numbers on every machine,
// compiler and standard library (std:: distributions are implementation-defined, so none is used).
// A trainer that resumes from a checkpoint must see the very same batches, so every random choice
// in data_*.cpp is a pure function of (seed, what is being chosen) through these helpers.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <utility>

namespace sy::data {

// SplitMix64's finalizer: a bijective mix of 64 bits.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Hash of a sequence of 64-bit values: hash_values({seed, epoch, example}).
inline uint64_t hash_values(std::initializer_list<uint64_t> values) {
  uint64_t h = 0x243f6a8885a308d3ull;
  for (uint64_t v : values) h = mix64(h ^ mix64(v));
  return h;
}

// FNV-1a over bytes; chained by passing the previous hash as `h`.
inline uint64_t fnv1a64(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// SplitMix64 generator.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, n), n > 0, without modulo bias (rejection of the short last block).
  uint64_t below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t r = next();
      if (r >= threshold) return r % n;
    }
  }

  // Fisher-Yates: every permutation equally likely.
  template <typename T>
  void shuffle(std::span<T> items) {
    for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[below(i)]);
  }

 private:
  uint64_t state_;
};

}  // namespace sy::data
