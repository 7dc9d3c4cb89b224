//! Pictures from records: ladder diagrams with endpoint states, time-sequence graphs, HTML.
//! Reads records only; it never re-analyses packets.
