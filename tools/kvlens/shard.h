// --shard I/N: data-parallel offline runs. A shard answers the items whose 0-based index in the run's list is
// ≡ I (mod N) and writes its own output; `kvlens merge` joins the N outputs into exactly the unsharded one.
//
// A shard's records carry two fields more than the unsharded ones, "shard" ("I/N") and "index" (the item's place
// in the whole list), and its run signature three keys more, appended last: shard=I/N, shard_items=M (the whole
// list's length, so merge sees a missing tail) and shard_data=H (a hash of the items, so shards of other data are
// told apart). merge checks them and removes them again. Without --shard nothing of this is written.
#pragma once
#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_signature.h"

namespace kvlens::cli {

// The run-signature keys only shards have (merge strips them).
inline const char * const kShardKeys[] = {"shard", "shard_items", "shard_data"};

struct Shard {
    int i = 0, n = 0;  // n == 0: not sharded
    bool on() const { return n > 0; }
    bool owns(size_t index) const { return !on() || index % (size_t) n == (size_t) i; }
    std::string str() const { return std::to_string(i) + "/" + std::to_string(n); }
    // Refuses a shard with no items (N above the list's length): merge could not tell it from a missing one.
    void check_items(size_t items) const;
    // Appends the shard keys to a run signature (nothing when not sharded).
    void sign(RunSignature & sig, size_t items, const std::string & data_hash) const;
    // Adds "shard" and "index" at the end of a record (nothing when not sharded).
    void tag(nlohmann::ordered_json & record, size_t index) const;
};

// "I/N" with 0 <= I < N (decimal digits only); anything else: kvlens::Error naming the flag.
Shard parse_shard(const std::string & spec);
void add_shard_flag(CLI::App & app, std::string & spec);

// A hash of a list of texts (the items a run answers): the data's identity in a shard's signature.
std::string items_hash(const std::vector<std::string> & parts);

}  // namespace kvlens::cli
