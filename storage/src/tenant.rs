//! Tenants: the `X-Scope-OrgID` header and tenant IDs, validated as Mimir
//! validates them. Shared by the write and the read path, so that both name
//! a request's tenant the same way.

/// Tenant used for every request when multitenancy is off.
pub const ANONYMOUS: &str = "anonymous";

/// HTTP header that names the tenant.
pub const ORG_ID_HEADER: &str = "X-Scope-OrgID";

const MAX_TENANT_ID_LENGTH: usize = 150;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("no org id")]
    Missing,
    #[error("tenant ID is {0} characters long, the limit is {MAX_TENANT_ID_LENGTH}")]
    TooLong(usize),
    #[error("tenant ID {0:?} contains unsupported character {1:?}")]
    BadCharacter(String, char),
    #[error("tenant ID must not be \".\" or \"..\"")]
    Dots,
    #[error("tenant ID is empty")]
    Empty,
}

/// Checks a tenant ID: 1 to 150 characters from `[a-zA-Z0-9!-_.*'()]`,
/// and neither `.` nor `..`.
pub fn validate_tenant_id(id: &str) -> Result<(), TenantError> {
    if id.is_empty() {
        return Err(TenantError::Empty);
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(TenantError::TooLong(id.len()));
    }
    if let Some(c) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(c)))
    {
        return Err(TenantError::BadCharacter(id.to_owned(), c));
    }
    if id == "." || id == ".." {
        return Err(TenantError::Dots);
    }
    Ok(())
}

/// The tenant of a request from its `X-Scope-OrgID` value.
pub fn tenant_from_header(
    header: Option<&str>,
    multitenancy_enabled: bool,
) -> Result<String, TenantError> {
    if !multitenancy_enabled {
        return Ok(ANONYMOUS.to_owned());
    }
    let id = header
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(TenantError::Missing)?;
    validate_tenant_id(id)?;
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for id in ["team-a", "A_b.c", "x!*'()", "1"] {
            validate_tenant_id(id).unwrap();
        }
    }

    #[test]
    fn invalid_ids() {
        assert_eq!(validate_tenant_id(""), Err(TenantError::Empty));
        assert_eq!(validate_tenant_id("."), Err(TenantError::Dots));
        assert_eq!(validate_tenant_id(".."), Err(TenantError::Dots));
        assert!(matches!(
            validate_tenant_id("a/b"),
            Err(TenantError::BadCharacter(_, '/'))
        ));
        assert!(matches!(
            validate_tenant_id("a|b"),
            Err(TenantError::BadCharacter(_, '|'))
        ));
        assert!(matches!(
            validate_tenant_id(&"a".repeat(151)),
            Err(TenantError::TooLong(151))
        ));
    }

    #[test]
    fn header_rules() {
        assert_eq!(tenant_from_header(None, false).unwrap(), ANONYMOUS);
        assert_eq!(tenant_from_header(Some("x"), false).unwrap(), ANONYMOUS);
        assert_eq!(tenant_from_header(None, true), Err(TenantError::Missing));
        assert_eq!(
            tenant_from_header(Some("  "), true),
            Err(TenantError::Missing)
        );
        assert_eq!(tenant_from_header(Some("t1"), true).unwrap(), "t1");
    }
}
