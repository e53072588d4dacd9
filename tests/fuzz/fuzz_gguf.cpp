// validate_gguf (src/engine/model.cpp): the checks kvlens makes before llama.cpp sees a model file. The parsing
// itself is gguf's (uninstrumented llama.cpp); a crash in there is reported as llama.cpp's, not fixed here.
#include <cstdint>

#include "fuzz_util.h"
#include "kvlens/error.h"
#include "kvlens/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string & path = kvlens::fuzz::scratch_file(data, size, ".gguf");
    try {
        (void) kvlens::validate_gguf(path);
    } catch (const kvlens::Error &) {
    }
    return 0;
}
