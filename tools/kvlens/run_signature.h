// The settings a resumable output (coe -o, think -o) was made with, as "key=value;key=value". Every record
// carries it; a resumed run with other settings is refused (naming the first key that differs) instead of
// silently mixing records of two runs in one file. probe prep keeps its settings in a meta line instead.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvlens::cli {

struct RunSignature {
    std::vector<std::pair<std::string, std::string>> kv;
    RunSignature & add(const std::string & key, const std::string & value);
    std::string str() const;
    // Throws kvlens::Error unless `stored` (a record's signature, "" when it has none) equals this one.
    void check(const std::string & stored, const std::string & out_path) const;
};

// The records of a resumable JSONL output (one object per line, with "id" and "run"), by id. A torn last line (a
// run killed mid-write) is cut off the file; every record's "run" must equal `sig` (else kvlens::Error); a file
// that does not exist gives none.
std::map<std::string, nlohmann::ordered_json> resume_records(const std::string & path, const RunSignature & sig);

// A cheap fingerprint of a model file: its size and an FNV-1a hash of its last MiB (where tensor data lives), so a
// retrained model of the same shape and name is told apart.
std::string weights_fingerprint(const std::string & path);

// FNV-1a of a text, as 16 hex digits (templates, prefixes).
std::string text_hash(const std::string & s);

}  // namespace kvlens::cli
