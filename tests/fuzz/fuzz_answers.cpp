// The answer extractors and checkers (src/tasks/answers*.cpp, arith_check) on model output the fuzzer writes.
// Input: "reference\nanswer_type\noutput".
#include <cstdint>

#include "fuzz_util.h"
#include "kvlens/answers.h"
#include "kvlens/arith.h"
#include "kvlens/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    auto parts = fuzz::split(data, size, 3);
    while (parts.size() < 3) parts.insert(parts.begin(), std::string());
    const std::string & ref = parts[0], & type = parts[1], & out = parts[2];
    BenchRow row;
    row.reference = ref;
    row.extra["answer_type"] = type;
    for (BenchFormat f : {BenchFormat::Gsm8k, BenchFormat::Mgsm, BenchFormat::Math, BenchFormat::TheoremQA,
                          BenchFormat::Csqa, BenchFormat::Belebele, BenchFormat::Arith}) {
        try {
            AnswerCheck c = check_answer(f, out, row);
            if (c.correct && !c.extracted && f != BenchFormat::Arith) std::abort();  // correct without an answer
        } catch (const Error &) {
        }
    }
    (void) answer_region(out);
    (void) normalize_number(out);
    (void) find_numbers(out);
    (void) extract_gsm8k_answer(out);
    (void) last_boxed(out);
    (void) normalize_math_answer(out);
    (void) math_equiv(ref, out);
    (void) parse_scientific(out);
    (void) extract_choice(out, "ABCDE", true);
    for (const char * t : {"bool", "integer", "float", "list of integer", "list of float", "option"})
        (void) extract_theoremqa_answer(out, t);
    try {
        (void) gsm8k_reference(out);
    } catch (const Error &) {
    }
    try {
        (void) arith_check(out, ref);
    } catch (const Error &) {
    }
    return 0;
}
