//! Checks on the free text commands carry: names, topics, reasons, messages, emoji.
//! Each returns the value to store (trimmed) or an `InvalidInput` naming the field.

use crate::error::DomainError;

/// Text of 1 to `max` characters, trimmed, without control characters (newlines and tabs
/// allowed).
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    text_or_empty(field, trimmed, max)
}

/// Like [`text`], but empty is allowed.
pub fn text_or_empty(field: &'static str, value: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    let count = trimmed.chars().count();
    if count > max {
        return Err(DomainError::invalid(field, format!("must be at most {max} characters (got {count})")));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// A guild, role or category name: 1 to 100 characters on one line.
pub fn name(field: &'static str, value: &str) -> Result<String, DomainError> {
    let name = text(field, value, 100)?;
    if name.contains(['\n', '\t']) {
        return Err(DomainError::invalid(field, "must be on one line"));
    }
    Ok(name)
}

/// A channel name: 1 to 100 characters, no whitespace except single spaces.
pub fn channel_name(value: &str) -> Result<String, DomainError> {
    let name = name("name", value)?;
    if name.contains("  ") {
        return Err(DomainError::invalid("name", "must not contain runs of spaces"));
    }
    Ok(name)
}

/// A moderator's reason: up to 512 characters, may be empty.
pub fn reason(value: &str) -> Result<String, DomainError> {
    text_or_empty("reason", value, 512)
}

/// A message: 1 to 4000 characters.
pub fn message(value: &str) -> Result<String, DomainError> {
    text("body", value, 4000)
}

/// A reaction: 1 to 64 bytes with no whitespace or control characters (a Unicode emoji or a
/// `:custom_name:`).
pub fn emoji(value: &str) -> Result<String, DomainError> {
    if value.is_empty() || value.len() > 64 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DomainError::invalid("emoji", "must be 1 to 64 bytes without spaces"));
    }
    Ok(value.to_owned())
}
