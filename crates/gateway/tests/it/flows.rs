//! Requests that go through: no PHI value reaches the upstream; answers are re-identified for
//! an allowed role only, with and without streaming, at every chunk boundary.

use serde_json::json;

use crate::harness::*;

const CANARIES: [&str; 3] = [CANARY_NAME, CANARY_DATE, CANARY_MRN];

fn assert_no_canary(up: &Upstream) {
    let all = up.all_bodies();
    assert!(!all.is_empty(), "the upstream received nothing");
    for c in CANARIES {
        assert!(!all.contains(c), "a PHI value reached the upstream");
    }
}

#[tokio::test]
async fn the_scanner_finds_every_canary() {
    // Otherwise the tests below would prove nothing.
    let s = phi::Scanner::new().unwrap();
    let found: Vec<&str> = s.scan(NOTE).iter().map(|f| &NOTE[f.start..f.end]).collect();
    for c in CANARIES {
        assert!(found.iter().any(|f| f.contains(c)), "canary not detected");
    }
}

/// Texts are read as the model reads them: a tool result serialized with JSON escapes
/// (PHP's `\/`, Python's `\uXXXX`) hides nothing.
#[tokio::test]
async fn escaped_values_in_a_request_are_found() {
    let s = stack().await;
    let tool_result =
        r#"{"seen_by": "Dr. Alan\u0020Smith", "on": "03\/14\/2021", "mrn": "44719\u0030\u0032"}"#;
    let body = json!({"model": "clinical-chat", "messages": [
        {"role": "user", "content": "Look up the visit."},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "visit", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": tool_result}]});
    let a = s.chat(&s.clinician, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let all = s.upstream.all_bodies();
    for leak in [r"03\\/14\\/2021", r"Alan\\u0020Smith", r"44719\\u0030\\u0032", "Smith"] {
        assert!(!all.contains(leak), "{leak} reached the upstream: {all}");
    }
}

/// PHI in an object key or a JSON number cannot take a placeholder: refused before anything
/// leaves. Schema bounds and top-level parameters are not data.
#[tokio::test]
async fn phi_in_keys_or_numbers_is_refused() {
    let s = stack().await;
    let tool = |schema: serde_json::Value| {
        json!({"model": "clinical-chat", "max_tokens": 4471902, "seed": 4471902,
            "messages": [{"role": "user", "content": "Summarize."}],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": schema}}]})
    };
    for schema in [
        json!({"type": "object", "properties": {"mrn": {"type": "integer", "enum": [4471902]}}}),
        json!({"type": "object", "properties": {"Alan Smith": {"type": "number"}}}),
    ] {
        let a = s.chat(&s.clinician, tool(schema.clone())).await;
        assert_eq!(a.code(), "unscannable_content", "{schema}: {}", a.body);
    }
    let meta = json!({"model": "clinical-chat", "messages": [{"role": "user", "content": "Hi."}],
        "metadata": {"Seen by Dr. Alan Smith": "yes"}});
    assert_eq!(s.chat(&s.clinician, meta).await.code(), "unscannable_content");
    assert_eq!(s.upstream.count(), 0);
    // Bounds, parameters and plain keys pass.
    let ok = tool(json!({"type": "object", "properties": {"mrn": {"type": "integer",
        "minimum": 1000000, "maximum": 99999999}}, "additionalProperties": false}));
    let a = s.chat(&s.clinician, ok).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// A name said in full once, then by surname alone in a later message (no cue there), reaches
/// the upstream tokenized both times; the clinician gets both back.
#[tokio::test]
async fn a_name_said_again_later_is_tokenized_too() {
    let s = stack().await;
    let body = json!({"model": "clinical-chat", "messages": [
        {"role": "user", "content": NOTE},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What dose for Smith? Smith weighs 70 kg."}]});
    let a = s.chat(&s.clinician, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = s.upstream.all_bodies();
    assert!(!sent.contains("Smith"), "a surname reached the upstream: {sent}");
    assert!(sent.contains("What dose for [NAME_"), "{sent}");
    let text = a.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert_eq!(text, "Noted: What dose for Smith? Smith weighs 70 kg.");
}

/// A request that sends one category as it is (`private_only`) and redacts another is recorded
/// by what left: `audit search --reason phi_private_only` finds it.
#[tokio::test]
async fn mixed_handling_is_recorded_by_what_left() {
    let uc = "  - name: mixed\n    purpose: treatment\n    roles: [clinician]\n    models: \
              [clinical-chat]\n    phi:\n      default: tokenize\n      categories: { DATE: \
              redact, MRN: private_only }\n";
    let s = stack_with(None, uc, "").await;
    let key = s.key("user:dr-mixed", "clinician", "mixed").await;
    let a = s.ask(&key, "clinical-chat", NOTE).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = s.upstream.all_bodies();
    assert!(sent.contains(CANARY_MRN) && !sent.contains(CANARY_DATE), "{sent}");
    let recs = s.records().await;
    let chat = recs.last().unwrap();
    assert_eq!(chat.reason().map(|r| r.as_str()), Some("phi_private_only"));
    assert_eq!(chat.decision(), ledger::Decision::Allow);
}

#[tokio::test]
async fn chat_is_tokenized_upstream_and_restored_for_clinicians_only() {
    let s = stack().await;
    let a = s.ask(&s.clinician, "clinical-chat", NOTE).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text, format!("Noted: {NOTE}"));
    assert_eq!(v["model"], "clinical-chat");
    assert_no_canary(&s.upstream);
    let sent = s.upstream.all_bodies();
    assert!(sent.contains("[NAME_1]"), "tokens were not sent: {sent}");
    assert!(sent.contains("upstream-llama"));

    let b = s.ask(&s.researcher, "clinical-chat", NOTE).await;
    assert_eq!(b.status, 200, "{}", b.body);
    let text = b.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    for c in CANARIES {
        assert!(!text.contains(c), "a researcher saw a value: {text}");
    }
    assert!(text.contains("[NAME_"), "{text}");
    assert_no_canary(&s.upstream);
}

#[tokio::test]
async fn tokens_are_consistent_across_a_conversation() {
    let s = stack().await;
    let conv = |c: &'static str| [("x-phigate-conversation", c)];
    let user = |b: &str| {
        serde_json::from_str::<serde_json::Value>(b).unwrap()["messages"][1]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Turn 1 names Smith first: he is NAME_1 in this conversation.
    for _ in 0..2 {
        let a = s
            .chat_with(Some(&s.researcher), &conv("conv-1"), chat_body("clinical-chat", NOTE))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // Turn 2 opens with another text (so only the header ties it to turn 1) and names Lopez
    // before Smith: Smith keeps NAME_1, Lopez gets the next number.
    let later = format!("Dr. Maria Lopez wants a second opinion. {NOTE}");
    let a =
        s.chat_with(Some(&s.researcher), &conv("conv-1"), chat_body("clinical-chat", &later)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // The same text in another conversation starts its own numbering: Lopez first.
    let a =
        s.chat_with(Some(&s.researcher), &conv("conv-2"), chat_body("clinical-chat", &later)).await;
    assert_eq!(a.status, 200, "{}", a.body);

    let bodies = s.upstream.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 4);
    let turns: Vec<String> = bodies.iter().map(|b| user(b)).collect();
    assert_eq!(turns[0], turns[1]);
    assert!(turns[0].contains("[NAME_1]"), "{}", turns[0]);
    // The token in front of " wants" (Lopez) and after "Seen by " (Smith).
    let lopez = |t: &str| t.split(" wants").next().unwrap().to_string();
    let smith =
        |t: &str| t.split("Seen by ").nth(1).unwrap().split(" on ").next().unwrap().to_string();
    assert_eq!(smith(&turns[0]), "[NAME_1]", "{}", turns[0]);
    assert_eq!(smith(&turns[2]), "[NAME_1]", "same conversation, Smith kept: {}", turns[2]);
    // Lopez is new to the conversation: the next number after turn 1's names, no gap.
    let mut names: Vec<&str> =
        turns[0].match_indices("[NAME_").map(|(i, _)| &turns[0][i..]).collect();
    names.iter_mut().for_each(|n| *n = &n[..=n.find(']').unwrap()]);
    names.sort_unstable();
    names.dedup();
    assert_eq!(lopez(&turns[2]), format!("[NAME_{}]", names.len() + 1), "{}", turns[2]);
    // Another conversation numbers from scratch: the first name it sees is NAME_1.
    assert_eq!(lopez(&turns[3]), "[NAME_1]", "other conversation: {}", turns[3]);
    assert_ne!(smith(&turns[3]), "[NAME_1]", "other conversation: {}", turns[3]);
}

#[tokio::test]
async fn a_name_of_an_earlier_turn_is_a_name_when_said_alone_later() {
    // A client that sends only its latest turn: the conversation's vault scope holds the names
    // of earlier turns, and a later turn that says one of their words alone is read with them.
    let s = stack().await;
    let conv = [("x-phigate-conversation", "trimmed-1")];
    let first = "Patient Adaeze Okonkwo, 67, admitted with chest pain.";
    let a = s.chat_with(Some(&s.researcher), &conv, chat_body("clinical-chat", first)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    for later in ["Okonkwo's potassium is 3.1; what now?", "Should Adaeze get aspirin?"] {
        let a = s.chat_with(Some(&s.researcher), &conv, chat_body("clinical-chat", later)).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // A one-word name stored (here "Zorblax": how strong its evidence was is not kept) is
    // looked for only capitalised in later turns: "zorblax", a product's log, stays.
    let a = s
        .chat_with(
            Some(&s.researcher),
            &conv,
            chat_body("clinical-chat", "Patient Zorblax was seen."),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = s
        .chat_with(
            Some(&s.researcher),
            &conv,
            chat_body("clinical-chat", "the zorblax logs show an error"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Another conversation holds no such name: the same words are read on their own there.
    let other = [("x-phigate-conversation", "trimmed-2")];
    let a = s
        .chat_with(
            Some(&s.researcher),
            &other,
            chat_body("clinical-chat", "Should Adaeze get aspirin?"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let bodies = s.upstream.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 6);
    for b in &bodies[..3] {
        assert!(
            !b.contains("Okonkwo") && !b.contains("Adaeze"),
            "an earlier turn's name left: {b}"
        );
    }
    assert!(!bodies[3].contains("Zorblax"), "{}", bodies[3]);
    assert!(
        bodies[4].contains("the zorblax logs"),
        "a stored lone name took a word: {}",
        bodies[4]
    );
}

#[tokio::test]
async fn every_message_role_and_tool_arguments_are_scanned() {
    let s = stack().await;
    let body = json!({"model": "clinical-chat", "messages": [
        {"role": "system", "content": format!("Context: {NOTE}")},
        {"role": "user", "content": [{"type": "text", "text": NOTE}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": format!("{{\"q\": \"{NOTE}\"}}")}}]},
        {"role": "tool", "tool_call_id": "c1", "content": NOTE},
        {"role": "user", "content": "Summarize."}
    ], "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]});
    let a = s.chat(&s.clinician, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_no_canary(&s.upstream);
    assert!(s.upstream.all_bodies().contains("\"tools\""), "tools were not passed through");
}

#[tokio::test]
async fn every_text_field_of_a_request_is_scanned() {
    // Not only message content: a participant name, bare-string content parts, the end-user
    // id, metadata, a predicted output, a tool's description and schema, and a field no
    // version of the API has yet.
    let s = stack().await;
    let body = json!({"model": "clinical-chat", "messages": [
        {"role": "system", "content": "You help clinicians.", "name": CANARY_NAME},
        {"role": "user", "content": [NOTE, {"type": "text", "text": "Summarize."}]}
    ],
    "user": NOTE,
    "metadata": {"note": NOTE},
    "prediction": {"type": "content", "content": NOTE},
    "tools": [{"type": "function", "function": {"name": "lookup", "description": NOTE,
        "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": NOTE}}}}}],
    "x_vendor_field": {"deep": [NOTE], "model": NOTE}});
    let a = s.chat(&s.clinician, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_no_canary(&s.upstream);
    let sent: serde_json::Value =
        serde_json::from_str(s.upstream.bodies.lock().unwrap().last().unwrap()).unwrap();
    assert_eq!(sent["messages"][0]["role"], "system", "a protocol word was rewritten");
    assert_eq!(sent["tools"][0]["function"]["parameters"]["type"], "object");
    // A participant name keeps the form OpenAI takes (`^[a-zA-Z0-9_-]+$`), and one written
    // as OpenAI allows it (no space) is read as a name.
    for name in [CANARY_NAME, "Alan_Smith", "alan_smith", "AlanSmith"] {
        let body = json!({"model": "clinical-chat", "messages": [
            {"role": "user", "content": "Summarize the plan.", "name": name}]});
        let a = s.chat(&s.clinician, body).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let sent: serde_json::Value =
            serde_json::from_str(s.upstream.bodies.lock().unwrap().last().unwrap()).unwrap();
        let got = sent["messages"][0]["name"].as_str().unwrap();
        assert!(!got.to_lowercase().contains("smith"), "{name}: {got}");
        assert!(got.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{got}");
    }
}

#[tokio::test]
async fn what_cannot_be_scanned_is_refused_before_it_leaves() {
    let s = stack().await;
    let image = json!({"model": "clinical-chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What does this scan show?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let audio = json!({"model": "clinical-chat", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]});
    let mut logprobs = chat_body("clinical-chat", "Plan?");
    logprobs["logprobs"] = json!(true);
    let mut top = chat_body("clinical-chat", "Plan?");
    top["top_logprobs"] = json!(3);
    let mut spoken = chat_body("clinical-chat", "Plan?");
    spoken["modalities"] = json!(["text", "audio"]);
    // Media that servers read by its key, with no type or beside a text part's text.
    let part = |p: serde_json::Value| {
        json!({"model": "clinical-chat", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Transcribe and summarize."}, p]}]})
    };
    let untyped = [
        part(json!({"audio_url": {"url": "data:audio/wav;base64,UklGRi4uLi5XQVZF"}})),
        part(json!({"video_url": {"url": "data:video/mp4;base64,AAAAIGZ0eXA="}})),
        part(json!({"image_embeds": "AAAA"})),
    ];
    for body in [image, audio, logprobs, top, spoken].into_iter().chain(untyped) {
        let a = s.chat(&s.clinician, body).await;
        assert_error(&a, 400, "unscannable_content");
    }
    assert_eq!(s.upstream.count(), 0, "a request that could not be scanned reached the upstream");
    // A text part's other keys are taken off, not refused: a framework's own (LangChain's `id`,
    // `index`) and any a server would read as media beside the text.
    let trimmed = json!({"model": "clinical-chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Transcribe.", "id": "lc_1", "index": 0,
         "audio_url": "data:audio/wav;base64,UklG"}]}]});
    assert_eq!(s.chat(&s.clinician, trimmed).await.status, 200);
    let sent = s.upstream.bodies.lock().unwrap().last().unwrap().clone();
    assert!(
        !sent.contains("audio_url") && !sent.contains("lc_1") && sent.contains("Transcribe."),
        "{sent}"
    );
    // Asking for no log-probabilities is fine.
    let mut off = chat_body("clinical-chat", "Plan?");
    off["logprobs"] = json!(false);
    assert_eq!(s.chat(&s.clinician, off).await.status, 200);
}

#[tokio::test]
async fn new_phi_in_the_answer_is_redacted() {
    let s = stack().await;
    s.upstream.set_extra(" Call her at (617) 555-0199 or jane.roe@example.org.");
    let a = s.ask(&s.clinician, "clinical-chat", "Any plan?").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.body.contains("555-0199"), "{}", a.body);
    assert!(!a.body.contains("jane.roe@example.org"), "{}", a.body);
    assert!(a.body.contains("[PHONE]") || a.body.contains("[EMAIL]"), "{}", a.body);
}

async fn stream_text(s: &Stack, key: &str, extra: serde_json::Value) -> String {
    let mut body = stream_body("clinical-chat", NOTE);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let a = s.chat(key, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    sse_text(&a.body)
}

#[tokio::test]
async fn streaming_restores_for_clinicians_at_every_chunk_boundary() {
    let s = stack().await;
    let want = format!("Noted: {NOTE}");
    assert_eq!(stream_text(&s, &s.clinician, json!({"x_chunk": 1})).await, want);
    assert_eq!(stream_text(&s, &s.clinician, json!({"x_chunk": 3})).await, want);
    // The tokenized answer the upstream streams: find its length, then cut at every byte.
    let upstream_len = {
        let bodies = s.upstream.bodies.lock().unwrap();
        let v: serde_json::Value = serde_json::from_str(bodies.last().unwrap()).unwrap();
        format!("Noted: {}", v["messages"][1]["content"].as_str().unwrap()).len()
    };
    for at in 0..=upstream_len {
        assert_eq!(
            stream_text(&s, &s.clinician, json!({"x_split": at})).await,
            want,
            "split at {at}"
        );
    }
    assert_no_canary(&s.upstream);
}

#[tokio::test]
async fn streaming_gives_placeholders_only_to_other_roles() {
    let s = stack().await;
    for chunk in [1, 2, 7] {
        let text = stream_text(&s, &s.researcher, json!({"x_chunk": chunk})).await;
        for c in CANARIES {
            assert!(!text.contains(c), "a researcher saw a value");
        }
        assert!(text.contains("[NAME_1]"), "{text}");
    }
    assert_no_canary(&s.upstream);
}

#[tokio::test]
async fn streaming_redacts_new_phi_split_across_chunks() {
    let s = stack().await;
    s.upstream.set_extra(" Her SSN is 219-09-9999 and phone (617) 555-0199.");
    let mut body = stream_body("clinical-chat", "Plan?");
    body["x_chunk"] = json!(2);
    let a = s.chat(&s.clinician, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let text = sse_text(&a.body);
    assert!(!text.contains("555-0199") && !text.contains("219-09-9999"), "{text}");
}

/// A name new to the answer, said again later without a cue ("Okonkwo responded well"), is
/// redacted in a stream as in a whole answer, though its first mention went out long before
/// (the hold-back window sees only the last bytes). A bare surname of a name the caller sent
/// is no new PHI, in either.
#[tokio::test]
async fn a_new_name_said_again_later_in_a_stream_is_redacted() {
    let s = stack().await;
    s.upstream.set_extra(
        " Discharge summary for Adaeze Okonkwo, a 54 year old woman admitted for community \
         acquired pneumonia. Okonkwo responded well to ceftriaxone and azithromycin. Okonkwo \
         will follow up in clinic. Smith agreed.",
    );
    let whole = s.ask(&s.researcher, "clinical-chat", NOTE).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    let whole = whole.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    for key in [&s.researcher, &s.clinician] {
        for chunk in [4, 9, 64] {
            let text = stream_text(&s, key, json!({"x_chunk": chunk})).await;
            assert!(!text.contains("Okonkwo") && !text.contains("Adaeze"), "{chunk}: {text}");
            assert_eq!(text.matches("[NAME]").count(), 3, "{chunk}: {text}");
            // The request's name: its bare surname is the caller's own.
            assert!(text.ends_with("in clinic. Smith agreed."), "{chunk}: {text}");
        }
    }
    assert!(!whole.contains("Okonkwo") && whole.ends_with("Smith agreed."), "{whole}");
    assert_no_canary(&s.upstream);
}

#[tokio::test]
async fn embeddings_are_tokenized_and_models_are_scoped() {
    let s = stack().await;
    let a = s
        .post(
            "/v1/embeddings",
            &s.clinician,
            json!({"model": "clinical-chat", "input": [NOTE, "plain"]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_no_canary(&s.upstream);
    // Documents embedded apart are numbered apart: the vendor cannot link two documents of one
    // patient by a shared placeholder.
    for doc in ["Alan Smith was admitted.", "Maria Garcia visited Alan Smith."] {
        let a = s
            .post(
                "/v1/embeddings",
                &s.clinician,
                json!({"model": "clinical-chat",
            "input": doc}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let sent = s.upstream.all_bodies();
    assert!(sent.contains("[NAME_1] was admitted."), "{sent}");
    assert!(sent.contains("[NAME_1] visited [NAME_2]."), "{sent}");
    // An embeddings call's `user` is read as a participant's name, as a chat's is; an
    // identifier joined to a word by `_` is found (a file name, a snake_case id).
    let a = s
        .post(
            "/v1/embeddings",
            &s.clinician,
            json!({"model": "clinical-chat", "input": "scan_report_617-555-0199.pdf",
                   "user": "maria_garcia"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = s.upstream.all_bodies();
    assert!(!sent.contains("555-0199") && !sent.contains("garcia"), "{sent}");

    let m = s.get("/v1/models", Some(&s.blocker)).await;
    assert_eq!(m.status, 200);
    let ids: Vec<String> = m.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["clinical-chat"]);
}

#[tokio::test]
async fn deidentify_metrics_health_and_ledger() {
    let s = stack().await;
    let a = s.post("/v1/deidentify", &s.researcher, json!({"text": NOTE, "mode": "redact"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let t = a.json()["text"].as_str().unwrap().to_string();
    assert!(t.contains("[NAME]") && !t.contains(CANARY_NAME), "{t}");
    let f = s.post("/v1/deidentify", &s.researcher, json!({"text": NOTE, "mode": "scan"})).await;
    assert_eq!(f.status, 200);
    assert!(!f.body.contains(CANARY_NAME));
    assert_eq!(f.json()["findings"].as_array().unwrap().len(), 3);
    // Scores have two decimals, as `phigate scan` prints them (not an f32 widened to f64).
    for s in f.json()["findings"].as_array().unwrap() {
        let text = s["score"].to_string();
        assert!(text.len() <= 4 && s["score"].as_f64().is_some(), "score {text}");
    }
    // The keyed modes answer with one gateway-wide key (an oracle for guesses): only roles that
    // may re-identify get them; the unkeyed ones are for every caller with a use case.
    for mode in ["hash", "surrogate"] {
        let body = json!({"text": NOTE, "mode": mode});
        assert_error(
            &s.post("/v1/deidentify", &s.researcher, body.clone()).await,
            403,
            "role_not_allowed",
        );
        let ok = s.post("/v1/deidentify", &s.clinician, body).await;
        assert_eq!(ok.status, 200, "{mode}: {}", ok.body);
        assert!(!ok.body.contains(CANARY_NAME), "{mode}: {}", ok.body);
    }

    let c = s.ask(&s.clinician, "clinical-chat", NOTE).await;
    assert_eq!(c.status, 200);
    assert_eq!(s.get("/healthz", None).await.status, 200);
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get("/v1/nowhere", None).await.status, 404);
    // A known route with another method: 405 in OpenAI's error shape, counted with its code.
    let wrong = s.get("/v1/chat/completions", Some(&s.clinician)).await;
    assert_error(&wrong, 405, "method_not_allowed");
    let m = s.get("/metrics", None).await;
    // The series each request counts into (handles looked up once, labels without copies).
    for series in [
        r#"phigate_requests_total{route="/v1/chat/completions",status="200",code="ok"}"#,
        r#"phigate_requests_total{route="/v1/deidentify",status="200",code="ok"}"#,
        r#"phigate_requests_total{route="unmatched",status="404",code="not_found"}"#,
        r#"phigate_requests_total{route="/v1/chat/completions",status="405",code="method_not_allowed"}"#,
        r#"phigate_request_seconds_count{route="/healthz"}"#,
        r#"phigate_phi_findings_total{category="NAME"}"#,
        r#"phigate_decisions_total{decision="tokenize",reason="phi_tokenized"}"#,
        r#"phigate_stage_seconds_count{stage="scan"}"#,
        r#"phigate_stage_seconds_count{stage="vault"}"#,
        r#"phigate_stage_seconds_count{stage="ledger"}"#,
        r#"phigate_stage_seconds_count{stage="upstream"}"#,
    ] {
        assert!(m.body.contains(series), "no {series} in:\n{}", m.body);
    }
    for c in CANARIES {
        assert!(!m.body.contains(c));
    }
    // One record per request (plus the vault's reveal record), none with a value.
    let entries = s.store.ledger_read(0, s.store.ledger_len().await.unwrap()).await.unwrap();
    assert!(entries.len() >= 4, "{} records", entries.len());
    for e in &entries {
        let text = String::from_utf8_lossy(&e.body);
        for c in CANARIES {
            assert!(!text.contains(c), "a value in the ledger");
        }
    }
    let chat = entries
        .iter()
        .filter_map(|e| ledger::Record::decode(&e.body).ok())
        .find(|r| r.action() == ledger::Action::ChatCompletion)
        .expect("a chat record");
    assert_eq!(chat.decision(), ledger::Decision::Tokenize);
    assert_eq!(chat.use_case().map(|s| s.as_str()), Some("clinical-notes"));
    assert_eq!(chat.provider().map(|s| s.as_str()), Some("local"));
    assert!(chat.request_hmac().is_some());
    assert_eq!(chat.categories().get(&phi::Category::Name), Some(&1));
}

#[tokio::test]
async fn fallback_skips_a_dead_deployment() {
    let s = stack().await;
    let a = s.ask(&s.clinician, "fallback-chat", NOTE).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(s.upstream.count(), 1);
    // Each deployment the request was sent to has its own record, written before the send:
    // the dead one may have received the body before it failed.
    let all = s.records().await;
    let recs: Vec<&ledger::Record> =
        all.iter().filter(|r| r.action() == ledger::Action::ChatCompletion).collect();
    let sent: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| {
            assert_eq!(r.decision(), ledger::Decision::Tokenize);
            assert_eq!(r.categories().get(&phi::Category::Name), Some(&1));
            (
                r.provider().map_or("-", |p| p.as_str()),
                r.model_version().map_or("-", |m| m.as_str()),
            )
        })
        .collect();
    assert_eq!(sent, [("dead", "nothing"), ("local", "upstream-llama")]);
    assert_eq!(recs[0].request_hmac(), recs[1].request_hmac(), "one request, two recipients");
    // The clinician may see values: the answer's tokens are revealed (and recorded) once.
    let reveals: Vec<_> =
        all.iter().filter(|r| r.action() == ledger::Action::VaultReidentify).collect();
    assert_eq!(reveals.len(), 1);
    assert_eq!(reveals[0].categories().get(&phi::Category::Name), Some(&1));
}

#[tokio::test]
async fn nothing_leaves_when_the_ledger_cannot_record_it() {
    let s = stack().await;
    // A request with no PHI needs no vault; only the ledger could stop it.
    assert_eq!(s.ask(&s.clinician, "clinical-chat", "hello").await.status, 200);
    assert_eq!(s.upstream.count(), 1);
    s.store.close().await;
    let a = s.ask(&s.clinician, "clinical-chat", "hello again").await;
    assert!(a.status.is_server_error(), "{} {}", a.status, a.body);
    assert_eq!(s.upstream.count(), 1, "a request the ledger could not record was sent");
}

#[tokio::test]
async fn azure_deployment_url_api_version_and_api_key() {
    let s = stack().await;
    let a = s.ask(&s.clinician, "azure-chat", NOTE).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = s.upstream.azure.lock().unwrap().clone();
    assert_eq!(seen, ["gpt4o-deployment|api-version=2024-10-21|azure-test-key|bearer=false"]);
    // A signed, unexpired BAA: PHI may go, tokenized.
    assert_no_canary(&s.upstream);
    assert!(!s.upstream.all_bodies().contains("\"model\""), "Azure bodies carry no model");
}

#[tokio::test]
async fn private_only_goes_to_private_deployments_only() {
    let s = stack_with(
        None,
        "  - name: private-names\n    purpose: treatment\n    roles: [researcher]\n    models: [clinical-chat, azure-chat]\n    phi:\n      default: tokenize\n      categories: { NAME: private_only }\n",
        "",
    )
    .await;
    let key = s.key("user:res-p", "researcher", "private-names").await;
    // A name, under private_only: the private deployment gets it as it is...
    let a = s.ask(&key, "clinical-chat", "Seen by Dr. Alan Smith today.").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(s.upstream.all_bodies().contains(CANARY_NAME));
    // ...and the cloud deployment (even with a BAA) gets nothing.
    let b = s.ask(&key, "azure-chat", "Seen by Dr. Alan Smith today.").await;
    assert_eq!(b.code(), "no_eligible_provider", "{}", b.body);
    // Without a name (an MRN, tokenized), the BAA-covered cloud deployment is eligible.
    let c = s.ask(&key, "azure-chat", "MRN: 4471902, stable.").await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(!s.upstream.all_bodies().contains(CANARY_MRN));
}

#[tokio::test]
async fn a_private_only_header_keeps_tokens_and_keeps_phi_private() {
    let s = stack().await;
    let header = [("x-phigate-phi-handling", "private_only")];
    // The use case tokenizes. Asking for private_only must not send the name as it is to the
    // private deployment (that would loosen the policy): it stays tokenized...
    let a = s
        .chat_with(
            Some(&s.clinician),
            &header,
            chat_body("clinical-chat", "Seen by Dr. Alan Smith."),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_no_canary(&s.upstream);
    assert!(s.upstream.all_bodies().contains("[NAME_1]"), "{}", s.upstream.all_bodies());
    // ...and the request's PHI goes to private deployments only: not to the BAA-covered cloud
    // deployment it could reach without the header.
    let b = s.chat_with(Some(&s.clinician), &header, chat_body("azure-chat", NOTE)).await;
    assert_eq!(b.code(), "no_eligible_provider", "{}", b.body);
    assert_eq!(s.upstream.count(), 1);
    // Without PHI the header does not restrict routing.
    let c = s
        .chat_with(Some(&s.clinician), &header, chat_body("azure-chat", "Normal potassium?"))
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
}

/// A key holding a category whose handling is `private_only` is sent as it is, and only to
/// private deployments; one whose category is blocked is `phi_blocked`.
#[tokio::test]
async fn phi_in_a_key_follows_private_only_and_block() {
    let s = stack_with(
        None,
        "  - name: private-names\n    purpose: treatment\n    roles: [researcher]\n    models: [clinical-chat, azure-chat]\n    phi:\n      default: tokenize\n      categories: { NAME: private_only }\n",
        "",
    )
    .await;
    let key = s.key("user:res-k", "researcher", "private-names").await;
    let body = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "Hi."}],
            "metadata": {"Seen by Dr. Alan Smith": "yes"}})
    };
    // The answer repeats the name: a value of the request, not new PHI.
    s.upstream.set_extra(" Re: Alan Smith.");
    let a = s.chat(&key, body("clinical-chat")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(s.upstream.all_bodies().contains(CANARY_NAME));
    let answer = a.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(answer.contains("Re: Alan Smith."), "{answer}");
    let b = s.chat(&key, body("azure-chat")).await;
    assert_eq!(b.code(), "no_eligible_provider", "{}", b.body);
    // The organization blocks SSN: in a number it is phi_blocked, not sent.
    let ssn = json!({"model": "clinical-chat", "messages": [{"role": "user", "content": "Hi."}],
        "metadata": {"SSN 219-09-9999": "x"}});
    assert_eq!(s.chat(&key, ssn).await.code(), "phi_blocked");
}

#[tokio::test]
async fn identities_the_slug_rules_refuse_are_recorded_apart_not_as_nobody() {
    // A numeric staff id (a run of 7 digits is refused in the ledger, as an MRN would be) and
    // an identity the old slugging merged with another ('@' became '-').
    let s = stack().await;
    let key = ledger::HmacKey::from_bytes(&[7u8; 32]).unwrap();
    for id in ["user:1234567", "user:a@b.org", "user:a-b.org"] {
        let k = s.key(id, "clinician", "clinical-notes").await;
        assert_eq!(s.ask(&k, "clinical-chat", "Plan?").await.status, 200);
        let last = s.records().await.pop().unwrap();
        assert_eq!(last.actor().as_str(), ledger::actor_name(&key, id), "{id}");
    }
    let actors: std::collections::HashSet<String> =
        s.records().await.iter().map(|r| r.actor().as_str().to_string()).collect();
    assert!(!actors.contains("unrecorded-identity"), "{actors:?}");
    assert!(actors.contains("user:a-b.org") && actors.len() >= 3, "{actors:?}");
}
