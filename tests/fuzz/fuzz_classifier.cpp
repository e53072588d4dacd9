// KvClassifier::load (src/decisions/probe_io.cpp): a classifier GGUF from anywhere.
#include <cstdint>

#include "fuzz_util.h"
#include "kvlens/error.h"
#include "kvlens/probe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string & path = kvlens::fuzz::scratch_file(data, size, ".gguf");
    try {
        (void) kvlens::KvClassifier::load(path);
    } catch (const kvlens::Error &) {
    }
    return 0;
}
