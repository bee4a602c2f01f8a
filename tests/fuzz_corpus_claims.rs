//! Replays the `claim_table` fuzz corpus (`fuzz/corpus/claim_table/`) through the check the
//! cargo-fuzz target runs. `cargo test --test fuzz_corpus_claims -- --ignored write_seeds`
//! regenerates the hand-made seeds (`seed-*`).

#[path = "../fuzz/src/claim_checks.rs"]
mod claim_checks;
#[path = "common/corpus.rs"]
mod corpus;

#[test]
fn claim_table_corpus_replays() {
    corpus::replay("claim_table", 20, claim_checks::check_claim_table);
}

#[test]
fn seeds_are_current() {
    // The seeds' field offsets follow the table layout: a valid seed must claim cleanly.
    let seeds = claim_checks::seeds();
    claim_checks::check_claim_table(&seeds[0].1);
    assert!(seeds.len() > 20);
}

#[test]
#[ignore = "writes the hand-made seeds into fuzz/corpus/claim_table"]
fn write_seeds() {
    corpus::write_seeds("claim_table", claim_checks::seeds());
}
