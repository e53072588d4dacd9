// read_coe_records (src/features/coe_run_records.cpp): the records a resumed `coe -o` reads back.
#include <cstdint>

#include "fuzz_util.h"
#include "kvlens/coe_run.h"
#include "kvlens/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    const std::string & path = fuzz::scratch_file(data, size, ".jsonl");
    for (bool torn : {false, true}) {
        try {
            size_t valid = 0;
            auto recs = read_coe_records(path, torn, &valid);
            if (valid > size) std::abort();
            for (const CoeRecord & r : recs) (void) coe_record_scores(r);
        } catch (const Error &) {
        }
    }
    return 0;
}
