// read_npy (src/eval/npy.cpp) on any file.
#include <cstdint>

#include "fuzz_util.h"
#include "kvlens/error.h"
#include "kvlens/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    const std::string & path = fuzz::scratch_file(data, size, ".npy");
    try {
        std::vector<size_t> shape;
        std::vector<float> v = read_npy(path, shape);
        size_t n = 1;
        for (size_t d : shape) n *= d;
        if (n != v.size()) std::abort();  // the shape must describe the data returned
    } catch (const Error &) {
    }
    return 0;
}
