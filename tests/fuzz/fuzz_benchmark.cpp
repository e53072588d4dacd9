// load_benchmark (dataset and benchmark JSONL rows, every format) and load_think_items, then each row's checker.
// Input: byte 0 picks the format, the rest is the file.
#include <cstdint>

#include "fuzz_util.h"
#include "kvlens/answers.h"
#include "kvlens/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    if (size < 1) return 0;
    static const char * formats[] = {"gsm8k", "mgsm", "math", "theoremqa", "csqa", "belebele", "arith"};
    const char * format = formats[data[0] % 7];
    const std::string & path = fuzz::scratch_file(data + 1, size - 1, ".jsonl");
    try {
        auto rows = load_benchmark(path, format);
        for (const BenchRow & r : rows) {
            (void) check_answer(parse_bench_format(format), r.question, r);
            (void) check_answer(parse_bench_format(format), r.reference, r);
        }
    } catch (const Error &) {
    }
    return 0;
}
