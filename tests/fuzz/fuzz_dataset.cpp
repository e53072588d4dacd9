// load_dataset (src/eval/classify.cpp): a classification folder (labels.json, train.jsonl, test.jsonl) as
// `bench classify --data` reads it. Input: the three files separated by NUL bytes. Besides no crash: what loads
// has non-empty texts and every label is an index into labels.json.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "kvlens/error.h"
#include "kvlens/probe_eval.h"

namespace {

void write(const std::string & path, const std::string & s) {
    FILE * f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (!s.empty() && std::fwrite(s.data(), 1, s.size(), f) != s.size()) std::abort();
    if (std::fclose(f) != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    static const std::string dir = [] {
        std::string d = "/tmp/kvlens-fuzz-dataset-" + std::to_string(getpid());
        std::filesystem::create_directories(d);
        return d;
    }();
    std::string parts[3];
    int at = 0;
    for (size_t i = 0; i < size; ++i) {
        if (data[i] == 0 && at < 2) ++at;
        else parts[at] += char(data[i]);
    }
    write(dir + "/labels.json", parts[0]);
    write(dir + "/train.jsonl", parts[1]);
    write(dir + "/test.jsonl", parts[2]);
    try {
        kvlens::probe::Dataset d = kvlens::probe::load_dataset(dir);
        if (d.label_names.empty() || d.train.empty() || d.test.empty()) std::abort();
        for (auto * split : {&d.train, &d.test})
            for (auto & r : *split)
                if (r.text.empty() || r.label < 0 || r.label >= (int) d.label_names.size()) std::abort();
    } catch (const kvlens::Error &) {
    }
    return 0;
}
