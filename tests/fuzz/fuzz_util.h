// Shared helpers of the libFuzzer targets (tests/fuzz/README in docs/RELIABILITY.md "Fuzzing").
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace kvlens::fuzz {

// A scratch file of this process, rewritten with `data` on each call (the loaders under test read paths).
inline const std::string & scratch_file(const uint8_t * data, size_t size, const char * suffix = "") {
    static std::string path = [&] {
        std::string p = "/tmp/kvlens-fuzz-" + std::to_string(getpid()) + suffix;
        return p;
    }();
    FILE * f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size && std::fwrite(data, 1, size, f) != size) std::abort();
    if (std::fclose(f) != 0) std::abort();
    return path;
}

// Splits the input at '\n' into at most `max` parts (the last part keeps the rest).
inline std::vector<std::string> split(const uint8_t * data, size_t size, size_t max) {
    std::vector<std::string> out;
    std::string s(reinterpret_cast<const char *>(data), size);
    size_t pos = 0;
    while (out.size() + 1 < max) {
        size_t nl = s.find('\n', pos);
        if (nl == std::string::npos) break;
        out.push_back(s.substr(pos, nl - pos));
        pos = nl + 1;
    }
    out.push_back(s.substr(pos));
    return out;
}

}  // namespace kvlens::fuzz
