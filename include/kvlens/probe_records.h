// probe prep's JSONL read back for probe train: one meta line (model, window, caps, cache), then one record per
// question (fast/slow answers, their KV windows, the switch-aware cuts). Outside input: every field is type-checked
// with the file and line named in the error, before anything is trained on it.
#pragma once
#include <istream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvlens {

struct PrepExample {
    std::vector<float> x;  // the window's features
    float y = 0;           // label 0 / 25 / 75 / 100
    int group = 0;         // the question it came from (for the held-out split)
};

struct PrepData {
    nlohmann::ordered_json meta;      // the first file's meta object
    std::vector<PrepExample> ex;
    std::map<int, int> labels;        // label -> rows
    int groups = 0;                   // questions read
};

struct PrepReadOptions {
    std::string variant = "chat";     // chat | raw | both: which prompt windows become rows
    bool switch_aware = false;        // also the windows inside slow traces (0 if closing there is right, else 100)
    int short_cutoff = -1;            // label 0 vs 25; < 0: the file's fast_cap / 2
};

// Appends the rows of one file (`name` is used in errors). A second file must be for the same model and window.
// Lines that are not JSON are skipped (a line cut by an interrupted prep); anything else malformed is an Error.
void read_prep_records(std::istream & in, const std::string & name, const PrepReadOptions & o, PrepData & d);

// The label short cutoff the records were (or will be) labelled with: o.short_cutoff, else fast_cap / 2.
int prep_short_cutoff(const nlohmann::ordered_json & meta, const PrepReadOptions & o);

}  // namespace kvlens
