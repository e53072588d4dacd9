// resume_records (tools/kvlens/run_signature.cpp): the records a resumed `think -o` / `coe -o` reads back, with a
// torn last line cut off the file. Property beyond no-crash: what is left is whole lines.
#include <cstdint>
#include <fstream>
#include <iterator>

#include "fuzz_util.h"
#include "kvlens/error.h"
#include "run_signature.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    const std::string & path = fuzz::scratch_file(data, size, ".jsonl");
    cli::RunSignature sig;
    sig.add("model", "m").add("policy", "fixed");
    try {
        auto recs = cli::resume_records(path, sig);
        std::ifstream in(path, std::ios::binary);
        std::string left((std::istreambuf_iterator<char>(in)), {});
        if (!left.empty() && left.back() != '\n') std::abort();  // a torn line survived
        if (left.size() > size + 1) std::abort();
    } catch (const Error &) {
    }
    return 0;
}
