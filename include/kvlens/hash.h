// FNV-1a (64-bit): a cheap, stable, non-cryptographic hash for seeds and file fingerprints.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kvlens {

inline uint64_t fnv1a(std::string_view bytes, uint64_t h = 1469598103934665603ull) {
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

}  // namespace kvlens
