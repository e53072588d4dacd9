// Numeric flags: CLI11 with kvlens's range table (tools/kvlens/validate.cpp add_flag_rules / check_parsed), as
// `kvlens think` and `kvlens generate` attach it. Input: the arguments, one per line; byte 0 picks the command.
#include <cstdint>
#include <cstdio>

#include "fuzz_util.h"
#include "kvlens/error.h"
#include "validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    if (size < 1) return 0;
    static const char * cmds[] = {"kvlens think", "kvlens generate", "kvlens probe train", "kvlens coe"};
    CLI::App app("fuzz", cmds[data[0] % 4]);
    double temp = 0.8, top_p = 0.95, tau = 50, delta = 0, lr = 1e-3, wd = 0, val_frac = 0.1;
    int n = 64, c = 0, b = 512, t = 1, every = 1, arith = 0, max_tokens = 0;
    uint64_t seed = 0;
    std::string p, f;
    app.add_option("--temp", temp);
    app.add_option("--top-p", top_p);
    app.add_option("--tau", tau);
    app.add_option("--delta", delta);
    app.add_option("--lr", lr);
    app.add_option("--wd", wd);
    app.add_option("--val-frac", val_frac);
    app.add_option("-n,--n-predict", n);
    app.add_option("-c,--ctx-size", c);
    app.add_option("-b,--batch-size", b);
    app.add_option("-t,--threads", t);
    app.add_option("--every", every);
    app.add_option("--arith", arith);
    app.add_option("--max-tokens", max_tokens);
    app.add_option("-s,--seed", seed);
    app.add_option("-p,--prompt", p);
    app.add_option("-f,--file", f);
    kvlens::cli::add_flag_rules(app);
    std::vector<std::string> args = kvlens::fuzz::split(data + 1, size - 1, 64);
    std::vector<std::string> rev(args.rbegin(), args.rend());  // CLI11 takes them reversed
    try {
        app.parse(rev);
        kvlens::cli::check_parsed(app);
    } catch (const CLI::Error &) {
    } catch (const kvlens::Error &) {
    }
    return 0;
}
