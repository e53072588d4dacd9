// kvlens generate -m M -p P: stream text; --jsonl: one record per token and a summary record.
#include <climits>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "kvlens/error.h"

using namespace kvlens;

static int cmd_generate(int argc, char ** argv) {
    CLI::App app{"generate text (streams to stdout)", "kvlens generate"};
    cli::CommonArgs a;
    std::string prompt, file, reasoning = "auto";
    int n_predict = 128;
    bool jsonl = false, chat = false, no_bos = false;
    cli::add_model_flags(app, a);
    cli::add_session_flags(app, a);
    cli::add_sampling_flags(app, a);
    app.add_option("-p,--prompt", prompt, "prompt text");
    app.add_option("-f,--file", file, "read the prompt from a file");
    app.add_option("-n,--n-predict", n_predict, "tokens to generate at most (-1 = until the context ends)");
    app.add_flag("--chat", chat, "wrap the prompt as a user turn with the model's chat template");
    cli::PromptArgs pa;
    cli::add_prompt_flags(app, pa);
    app.add_option("--rea,--reasoning", reasoning, "with --chat: on (slow: think), off (fast) or auto (the template's default)")
        ->capture_default_str();
    app.add_flag("--no-bos", no_bos, "do not add BOS even if the model asks for it");
    app.add_flag("--jsonl", jsonl, "one JSON record per token (id, piece, logprob, maxprob, entropy) + a summary");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (n_predict < 0) n_predict = INT_MAX;  // -1: until the context ends (generation stops there, reason "context")

    std::string text = cli::read_prompt(prompt, file);
    auto model = cli::load_model(a);
    auto toks = cli::prompt_tokens(*model, pa, chat, reasoning, text, !no_bos);
    if (toks.empty()) throw Error("the prompt tokenizes to nothing");

    Session s(model, a.session);
    s.set_sampling(a.sampling);
    s.eval(toks);
    int n = 0;
    auto res = s.generate(n_predict, [&](const TokenEvent & ev) {
        ++n;
        if (jsonl) {
            nlohmann::ordered_json j = {{"i", n - 1}, {"pos", ev.pos}, {"id", ev.id}, {"piece", ev.piece},
                                        {"logprob", ev.logprob}, {"maxprob", ev.maxprob}, {"entropy", ev.entropy}};
            std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        } else if (!model->is_eog(ev.id)) {
            std::fputs(model->piece(ev.id, false).c_str(), stdout);
            std::fflush(stdout);
        }
        return true;
    });
    double tps = res.seconds > 0 ? res.tokens.size() / res.seconds : 0;
    if (jsonl) {
        nlohmann::ordered_json j = {{"summary", true}, {"prompt_tokens", toks.size()}, {"tokens", res.tokens.size()},
                                    {"seconds", res.seconds}, {"tok_per_s", tps}, {"stop", res.hit_eog ? "eog" : res.hit_ctx ? "context" : "cap"},
                                    {"text", res.text}};
        std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::printf("\n");
        std::fflush(stdout);
        std::fprintf(stderr, "[%zu prompt + %zu generated tokens, %.1f tok/s, stop: %s]\n", toks.size(),
                     res.tokens.size(), tps, res.hit_eog ? "end of generation" : res.hit_ctx ? "context full (-c)" : "token cap");
    }
    return 0;
}

KVLENS_COMMAND("generate", "generate text; --jsonl for per-token logprob/maxprob/entropy", cmd_generate);
