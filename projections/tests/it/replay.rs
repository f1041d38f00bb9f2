//! `audit replay` of a scripted moderation scenario.
