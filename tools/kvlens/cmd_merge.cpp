// kvlens merge -o OUT SHARD_FILE...: joins the outputs of `--shard I/N` runs (shard.h) into exactly the unsharded
// output: the records in the whole list's order, the shard-only fields and signature keys removed.
//
// Three kinds of shard file, told apart by their content:
//   records  coe -o, think -o: every line a record with "run" (signature + shard keys), "shard" and "index";
//   prep     probe prep -o: a meta line (settings, with meta.shard {i, n, items, data}), then records with "index";
//   embed    embed -o F.npy|F.jsonl (and bench classify --embed-dir): the shard's rows, beside a manifest
//            F.shard.json (signature, global indices, the file's size and hash, so a stale manifest is refused).
// Refused, with one error line and no output written: a file that is not a shard output, shards of another run
// (model, settings, data or N), a shard given twice, a shard missing, an item twice or missing (a shard that did
// not finish), a torn line. OUT is written to a temporary file and renamed: never half-written.
#include <cstdio>
#include <sys/stat.h>

#include "args.h"
#include "command.h"
#include "shard.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"

using namespace kvlens;

namespace {

int cmd_merge(int argc, char ** argv) {
    CLI::App app{"join the outputs of --shard I/N runs into the unsharded output (checked: same run, every shard and item once)",
                 "kvlens merge"};
    std::string out;
    std::vector<std::string> inputs;
    app.add_option("-o,--output", out, "the merged output (written whole, or not at all)")->required();
    app.add_option("shards", inputs, "the N shard files (any order)")->required();
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    {
        struct stat so{};
        const bool out_exists = stat(out.c_str(), &so) == 0;
        for (auto & p : inputs) {
            struct stat si{};
            if (stat(p.c_str(), &si) != 0) throw Error("cannot read " + p + " (no such file)");
            if (p == out || (out_exists && si.st_dev == so.st_dev && si.st_ino == so.st_ino))
                throw Error("-o " + out + " is one of the shard files");
        }
    }
    check_writable(out);
    const cli::MergedShards m = cli::merge_shards(inputs);
    cli::write_merged(m, out);
    std::fprintf(stderr, "merge: %d shards (%s), %zu items -> %s\n", m.n_shards, m.kind.c_str(), m.items, out.c_str());
    return 0;
}

}  // namespace

KVLENS_COMMAND("merge", "join the outputs of --shard I/N runs into the unsharded output (checked)", cmd_merge);
