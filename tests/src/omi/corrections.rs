//! The cases of the Omi vectors whose recorded result is an Omi bug, and what chunkvault
//! returns instead: one list for every suite that replays the vectors.

/// A recorded case whose result is an Omi bug, and what chunkvault does instead
/// (docs/COMPATIBILITY.md, "Deliberately different"). The service suite
/// (`tests/it/service_compat.rs`) and the CLI suites assert these instead of the recording.
#[derive(Debug)]
pub enum Correction {
    /// A range batch named only by an interior or end timestamp (start-only matching) is
    /// found: the same audio as this other case of the scenario (the whole batch); and a
    /// request naming a timestamp twice uses it once (duplicate doubling).
    SameAs(&'static str),
    /// E `iii_subset_*`: the range batch named by an interior timestamp is placed at its start
    /// (silence around it when gaps are filled) instead of being left out.
    SubsetWithBatch,
    /// Deleting by an interior or end timestamp deletes the range batch holding it (Omi leaves
    /// it: start-only matching in `delete_audio_chunks`, omi-layout.md §4.4).
    AlsoDeletes(&'static str),
}

/// Every case of A–E recorded with an Omi bug, by scenario and case name.
pub const CORRECTED: &[(&str, &str, Correction)] = &[
    (
        "B",
        "iii_subset_fill",
        Correction::SameAs("i_all_listed_fill"),
    ),
    (
        "B",
        "iii_subset_nofill",
        Correction::SameAs("i_all_listed_fill"),
    ),
    (
        "B",
        "iii_subset_end_only_fill",
        Correction::SameAs("i_all_listed_fill"),
    ),
    (
        "C",
        "iii_subset_fill",
        Correction::SameAs("i_all_listed_fill"),
    ),
    (
        "C",
        "iii_subset_nofill",
        Correction::SameAs("i_all_listed_fill"),
    ),
    (
        "C",
        "iii_subset_end_only_fill",
        Correction::SameAs("i_all_listed_fill"),
    ),
    (
        "E",
        "i_all_listed_fill",
        Correction::SameAs("v_unique_listed_fill"),
    ),
    (
        "E",
        "ii_all_listed_nofill",
        Correction::SameAs("v_unique_listed_nofill"),
    ),
    ("E", "iii_subset_fill", Correction::SubsetWithBatch),
    ("E", "iii_subset_nofill", Correction::SubsetWithBatch),
    (
        "B",
        "interior",
        Correction::AlsoDeletes("chunks/oracle-uid/conv-b/1786961845.727-1786961900.727.batch.bin"),
    ),
    (
        "B",
        "range_end",
        Correction::AlsoDeletes("chunks/oracle-uid/conv-b/1786961845.727-1786961900.727.batch.bin"),
    ),
    (
        "C",
        "interior",
        Correction::AlsoDeletes("chunks/oracle-uid/conv-c/1786961845.727-1786961900.727.batch.enc"),
    ),
    (
        "C",
        "range_end",
        Correction::AlsoDeletes("chunks/oracle-uid/conv-c/1786961845.727-1786961900.727.batch.enc"),
    ),
    (
        "E",
        "single_batchstart_interior",
        Correction::AlsoDeletes("chunks/oracle-uid/conv-e/1786961870.727-1786961885.727.batch.bin"),
    ),
];

/// The correction of case `case` of `scenario`, if its recorded result is an Omi bug.
pub fn correction(scenario: &str, case: &str) -> Option<&'static Correction> {
    CORRECTED
        .iter()
        .find(|(s, c, _)| *s == scenario && *c == case)
        .map(|(_, _, fix)| fix)
}
