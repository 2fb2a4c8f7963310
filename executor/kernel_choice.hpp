// Per-machine kernel choice: which of two equivalent kernels this CPU runs faster, for the shapes
// a program has. Today one choice: a bf16 x bf16 einsum runs natively (oneDNN's bf16 matmul) or
// widened to f32 while packing (exact) as an f32 matmul (executor/einsum.hpp Bf16Path). Measured
// through oneDNN 2.6 on two AMD EPYCs with AVX-512 BF16: bf16 ≈ 2× f32 on one, bf16 ≈ f32 on the
// other (and slower under load), so neither path can be fixed in the code.
//
// Probed at first use of a shape: both kernels run on operands of the shape, alternating
// (EinsumKernel::time_bf16_paths); widened is chosen when its median is under 95% of native's (a
// margin for noise, native being the path with half the bytes). The choice is cached per CPU model,
// oneDNN ISA and thread count in a JSON file under $SWITCHYARD_CACHE (default
// $XDG_CACHE_HOME/switchyard, else ~/.cache/switchyard), kernels/<cpu>-t<threads>.json, read and
// written under an exclusive lock so that processes starting together (MPI ranks on one host,
// parallel runs of a sweep) probe once and agree. The cache is best-effort: when it cannot be read
// or written the choice is kept in the process only.
//
// SY_KERNEL_PROBE selects the mode: auto (the default: cached choices, probing shapes not yet
// seen), reprobe (probe every shape again and overwrite the cache), off (no probing: native
// wherever the CPU has bf16 dot products). Choices are made once per process and shape, so a run
// is consistent with itself; a re-probe may pick the other path for a shape, whose results then
// differ in the last bits (the order of the additions), as between two machines.
#pragma once

#include "executor/einsum.hpp"

#include <functional>
#include <string>
#include <vector>

namespace sy::exec {

enum class ProbeMode { auto_, reprobe, off };

// SY_KERNEL_PROBE (auto when unset); InputError naming it and the allowed values otherwise.
ProbeMode probe_mode();
// Overrides SY_KERNEL_PROBE for this process (bench_train_step --kernel-probe).
void set_probe_mode(ProbeMode mode);

// One choice made in this process.
struct KernelChoice {
  std::string shape;             // "bf16[...] x bf16[...] -> f32[...]"
  Bf16Path path = Bf16Path::native;
  double native_s = 0, widened_s = 0;  // the probe's medians (0: not probed, e.g. mode off)
  std::string source;            // "probed", "cache", "off"
};

// The path for the einsum `shape` (a key naming its operand and output types): from this process's
// choices, else the cache file, else `probe()` (whose result is cached).
Bf16Path choose_bf16_path(const std::string& shape, int threads, const std::function<EinsumKernel::PathTimes()>& probe);

// Every choice this process made, in order of first use.
std::vector<KernelChoice> kernel_choices();

// The cache file for `threads` on this machine.
std::string kernel_cache_file(int threads);

// Forgets this process's choices and mode (tests: a second process reading the cache).
void forget_kernel_choices();

}  // namespace sy::exec
