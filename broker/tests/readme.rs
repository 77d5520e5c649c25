//! The README shows the message-queue example verbatim; this keeps the two from drifting apart.

#[test]
fn readme_embeds_the_queue_example_verbatim() {
    let readme = include_str!("../../README.md");
    let script = include_str!("../../tests/python/queue_example.py");
    assert!(readme.contains(script.trim_end()), "README.md must embed tests/python/queue_example.py unchanged");
}

#[test]
fn readme_gives_the_commands_ci_runs() {
    let readme = include_str!("../../README.md");
    let ci = include_str!("../../.ci/run");
    assert!(readme.contains("cargo run --release -p broker"));
    assert!(readme.contains("bash scripts/test.sh"));
    assert!(ci.contains("scripts/test.sh"), ".ci/run must call the README's test command");
}
