//! Permissions: the Discord bit set that matters here, the function that computes a
//! member's effective permissions, and a second, independent function that explains each
//! bit ("why can't I post here?"). A property test keeps the two in agreement.
//!
//! The order follows Discord's documented algorithm, with categories as an outer layer:
//! base = `@everyone` | the member's roles; the owner and ADMINISTRATOR short-circuit;
//! then for the category and then the channel: `@everyone` deny/allow, role deny/allow
//! (all of the member's roles together), member deny/allow. A timed-out member keeps only
//! VIEW_CHANNEL and READ_MESSAGE_HISTORY. In a channel, no VIEW_CHANNEL hides everything and
//! no SEND_MESSAGES also removes ATTACH_FILES and MENTION_EVERYONE.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{RoleId, Timestamp, UserId};

bitflags::bitflags! {
    /// Permission bits. The values are Discord's, so host applications that know Discord
    /// can map them directly.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
    pub struct Permissions: u64 {
        const CREATE_INVITE = 1 << 0;
        const KICK_MEMBERS = 1 << 1;
        const BAN_MEMBERS = 1 << 2;
        const ADMINISTRATOR = 1 << 3;
        const MANAGE_CHANNELS = 1 << 4;
        const MANAGE_GUILD = 1 << 5;
        const ADD_REACTIONS = 1 << 6;
        const VIEW_AUDIT_LOG = 1 << 7;
        /// Video: publish a camera or a screen share in voice channels.
        const STREAM = 1 << 9;
        const VIEW_CHANNEL = 1 << 10;
        const SEND_MESSAGES = 1 << 11;
        const MANAGE_MESSAGES = 1 << 13;
        const ATTACH_FILES = 1 << 15;
        const READ_MESSAGE_HISTORY = 1 << 16;
        const MENTION_EVERYONE = 1 << 17;
        const CONNECT = 1 << 20;
        const SPEAK = 1 << 21;
        const MUTE_MEMBERS = 1 << 22;
        const DEAFEN_MEMBERS = 1 << 23;
        const MOVE_MEMBERS = 1 << 24;
        const MANAGE_ROLES = 1 << 28;
        const CREATE_PUBLIC_THREADS = 1 << 35;
        const SEND_MESSAGES_IN_THREADS = 1 << 38;
        const MODERATE_MEMBERS = 1 << 40;
    }
}

impl Permissions {
    /// What a timed-out member keeps.
    pub const TIMEOUT_KEEPS: Permissions = Permissions::VIEW_CHANNEL.union(Permissions::READ_MESSAGE_HISTORY);

    /// What `@everyone` gets in a new guild.
    pub const DEFAULT_EVERYONE: Permissions = Permissions::VIEW_CHANNEL
        .union(Permissions::SEND_MESSAGES)
        .union(Permissions::READ_MESSAGE_HISTORY)
        .union(Permissions::ADD_REACTIONS)
        .union(Permissions::ATTACH_FILES)
        .union(Permissions::CREATE_INVITE)
        .union(Permissions::CREATE_PUBLIC_THREADS)
        .union(Permissions::SEND_MESSAGES_IN_THREADS)
        .union(Permissions::CONNECT)
        .union(Permissions::SPEAK)
        .union(Permissions::STREAM);

    /// What everyone in a direct message may do there: talk, react, attach and pin, never
    /// moderate each other.
    pub const DM_MEMBER: Permissions = Permissions::VIEW_CHANNEL
        .union(Permissions::SEND_MESSAGES)
        .union(Permissions::READ_MESSAGE_HISTORY)
        .union(Permissions::ADD_REACTIONS)
        .union(Permissions::ATTACH_FILES)
        .union(Permissions::CONNECT)
        .union(Permissions::SPEAK)
        .union(Permissions::STREAM);

    /// The names of the set bits, e.g. `["VIEW_CHANNEL", "SEND_MESSAGES"]`.
    pub fn names(self) -> Vec<&'static str> {
        self.iter_names().map(|(name, _)| name).collect()
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.bits().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bits = u64::deserialize(d)?;
        Permissions::from_bits(bits)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown permission bits in {bits:#x}")))
    }
}

/// Who a permission overwrite applies to. `Role(RoleId::EVERYONE)` is the `@everyone`
/// overwrite.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverwriteTarget {
    Role(RoleId),
    Member(UserId),
}

/// Bits an overwrite allows and denies.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Overwrite {
    pub allow: Permissions,
    pub deny: Permissions,
}

/// All overwrites of one channel or category.
pub type Overwrites = BTreeMap<OverwriteTarget, Overwrite>;

/// Where an overwrite layer sits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    Category,
    Channel,
}

/// Everything the permission functions need about one member in one place. Built by
/// [`crate::guild::Guild::permission_input`]; kept separate so the algorithm can be tested
/// on its own.
#[derive(Clone, Debug)]
pub struct PermissionInput<'a> {
    pub user: &'a UserId,
    pub is_owner: bool,
    /// `@everyone`'s permissions.
    pub everyone: Permissions,
    /// The member's other roles, highest position first.
    pub roles: Vec<(RoleId, Permissions)>,
    /// The overwrite layers that apply, outermost (category) first.
    pub layers: Vec<(Scope, &'a Overwrites)>,
    /// Set when the member is timed out at the moment asked about.
    pub timed_out_until: Option<Timestamp>,
    /// True when computing for a channel (the implicit channel rules apply).
    pub in_channel: bool,
}

/// The effective permissions, the fast bitwise way.
pub fn compute(input: &PermissionInput<'_>) -> Permissions {
    if input.is_owner {
        return Permissions::all();
    }
    let mut perms = input.roles.iter().fold(input.everyone, |acc, (_, p)| acc | *p);
    if perms.contains(Permissions::ADMINISTRATOR) {
        return Permissions::all();
    }
    let member = OverwriteTarget::Member(input.user.clone());
    for (_, overwrites) in &input.layers {
        if let Some(ow) = overwrites.get(&OverwriteTarget::Role(RoleId::EVERYONE)) {
            perms = (perms - ow.deny) | ow.allow;
        }
        let (allow, deny) =
            input.roles.iter().fold((Permissions::empty(), Permissions::empty()), |(allow, deny), (role, _)| {
                match overwrites.get(&OverwriteTarget::Role(*role)) {
                    Some(ow) => (allow | ow.allow, deny | ow.deny),
                    None => (allow, deny),
                }
            });
        perms = (perms - deny) | allow;
        if let Some(ow) = overwrites.get(&member) {
            perms = (perms - ow.deny) | ow.allow;
        }
    }
    if input.timed_out_until.is_some() {
        perms &= Permissions::TIMEOUT_KEEPS;
    }
    if input.in_channel {
        if !perms.contains(Permissions::VIEW_CHANNEL) {
            return Permissions::empty();
        }
        if !perms.contains(Permissions::SEND_MESSAGES) {
            perms -= Permissions::ATTACH_FILES | Permissions::MENTION_EVERYONE;
        }
    }
    perms
}

/// Why one permission bit ended up as it did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Reason {
    /// The guild owner has every permission.
    Owner,
    /// A role with ADMINISTRATOR grants every permission.
    Administrator { role: RoleId },
    /// Granted by this role's permissions (`RoleId::EVERYONE` for `@everyone`).
    Role { role: RoleId },
    /// No role grants it.
    NotGranted,
    /// An overwrite allowed or denied it.
    Overwrite { scope: Scope, target: OverwriteTarget, allowed: bool },
    /// Removed because the member is timed out.
    TimedOut { until: Timestamp },
    /// Removed because the member cannot see the channel.
    NoViewChannel,
    /// Removed because the member cannot send messages in the channel.
    NoSendMessages,
}

/// One permission's verdict with its reason.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verdict {
    pub permission: Permissions,
    pub name: &'static str,
    pub allowed: bool,
    pub reason: Reason,
}

/// Explains every permission bit: allowed or not, and which role or overwrite decided it.
/// Computed bit by bit, independently of [`compute`].
pub fn explain(input: &PermissionInput<'_>) -> Vec<Verdict> {
    let view = explain_bit(input, Permissions::VIEW_CHANNEL);
    let send = explain_bit(input, Permissions::SEND_MESSAGES);
    Permissions::all()
        .iter_names()
        .map(|(name, bit)| {
            let (mut allowed, mut reason) = explain_bit(input, bit);
            let special = input.is_owner || matches!(reason, Reason::Administrator { .. });
            if input.in_channel && !special {
                if allowed && !view.0 {
                    (allowed, reason) = (false, Reason::NoViewChannel);
                } else if allowed
                    && !send.0
                    && (bit == Permissions::ATTACH_FILES || bit == Permissions::MENTION_EVERYONE)
                {
                    (allowed, reason) = (false, Reason::NoSendMessages);
                }
            }
            Verdict { permission: bit, name, allowed, reason }
        })
        .collect()
}

/// One bit before the implicit channel rules.
fn explain_bit(input: &PermissionInput<'_>, bit: Permissions) -> (bool, Reason) {
    if input.is_owner {
        return (true, Reason::Owner);
    }
    let admin = input
        .roles
        .iter()
        .find(|(_, p)| p.contains(Permissions::ADMINISTRATOR))
        .map(|(role, _)| *role)
        .or_else(|| input.everyone.contains(Permissions::ADMINISTRATOR).then_some(RoleId::EVERYONE));
    if let Some(role) = admin {
        return (true, Reason::Administrator { role });
    }
    let mut state = match input.roles.iter().find(|(_, p)| p.contains(bit)) {
        Some((role, _)) => (true, Reason::Role { role: *role }),
        None if input.everyone.contains(bit) => (true, Reason::Role { role: RoleId::EVERYONE }),
        None => (false, Reason::NotGranted),
    };
    for (scope, overwrites) in &input.layers {
        let mut apply = |target: OverwriteTarget, ow: &Overwrite| {
            if ow.allow.contains(bit) {
                state = (true, Reason::Overwrite { scope: *scope, target, allowed: true });
            } else if ow.deny.contains(bit) {
                state = (false, Reason::Overwrite { scope: *scope, target, allowed: false });
            }
        };
        let everyone = OverwriteTarget::Role(RoleId::EVERYONE);
        if let Some(ow) = overwrites.get(&everyone) {
            apply(everyone, ow);
        }
        // Among the member's roles, an allow beats a deny at the same level.
        let role_ows = input.roles.iter().filter_map(|(role, _)| {
            let target = OverwriteTarget::Role(*role);
            overwrites.get(&target).map(|ow| (target, *ow))
        });
        let (allowing, denying): (Vec<_>, Vec<_>) =
            role_ows.filter(|(_, ow)| (ow.allow | ow.deny).contains(bit)).partition(|(_, ow)| ow.allow.contains(bit));
        if let Some((target, ow)) = allowing.into_iter().next().or_else(|| denying.into_iter().next()) {
            apply(target, &ow);
        }
        let member = OverwriteTarget::Member(input.user.clone());
        if let Some(ow) = overwrites.get(&member) {
            apply(member, ow);
        }
    }
    if let Some(until) = input.timed_out_until
        && state.0
        && !Permissions::TIMEOUT_KEEPS.contains(bit)
    {
        state = (false, Reason::TimedOut { until });
    }
    state
}

/// Collects the allowed bits of an explanation.
pub fn allowed(verdicts: &[Verdict]) -> Permissions {
    verdicts.iter().filter(|v| v.allowed).fold(Permissions::empty(), |acc, v| acc | v.permission)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user() -> UserId {
        "@m:hub.test".parse().unwrap()
    }

    fn perms() -> impl Strategy<Value = Permissions> {
        // Mostly without ADMINISTRATOR, so overwrites get exercised.
        (any::<u64>(), 0..8u8).prop_map(|(bits, admin)| {
            let p = Permissions::from_bits_truncate(bits);
            if admin == 0 { p } else { p - Permissions::ADMINISTRATOR }
        })
    }

    fn overwrite() -> impl Strategy<Value = Overwrite> {
        (perms(), perms()).prop_map(|(allow, deny)| Overwrite { allow, deny: deny - allow })
    }

    fn overwrites(roles: Vec<RoleId>) -> impl Strategy<Value = Overwrites> {
        let mut targets: Vec<OverwriteTarget> = roles.into_iter().map(OverwriteTarget::Role).collect();
        targets.push(OverwriteTarget::Role(RoleId::EVERYONE));
        targets.push(OverwriteTarget::Member(user()));
        proptest::collection::vec(proptest::option::of(overwrite()), targets.len())
            .prop_map(move |ows| targets.iter().cloned().zip(ows).filter_map(|(t, ow)| ow.map(|ow| (t, ow))).collect())
    }

    #[derive(Debug, Clone)]
    struct Case {
        is_owner: bool,
        everyone: Permissions,
        roles: Vec<(RoleId, Permissions)>,
        layers: Vec<(Scope, Overwrites)>,
        timed_out: bool,
        in_channel: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        let role_ids: Vec<RoleId> = (1..=3u8).map(|i| RoleId::from_bytes([i; 16])).collect();
        (
            0..10u8,
            perms(),
            proptest::collection::vec(perms(), 3),
            0..4usize,
            overwrites(role_ids.clone()),
            overwrites(role_ids.clone()),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(owner, everyone, role_perms, n, cat, chan, timed_out, in_channel)| Case {
                is_owner: owner == 0,
                everyone,
                roles: role_ids.iter().copied().zip(role_perms).take(n).collect(),
                layers: vec![(Scope::Category, cat), (Scope::Channel, chan)],
                timed_out,
                in_channel,
            })
    }

    fn input<'a>(c: &'a Case, user: &'a UserId) -> PermissionInput<'a> {
        PermissionInput {
            user,
            is_owner: c.is_owner,
            everyone: c.everyone,
            roles: c.roles.clone(),
            layers: c.layers.iter().map(|(s, o)| (*s, o)).collect(),
            timed_out_until: c.timed_out.then(|| Timestamp::from_millis(5).unwrap()),
            in_channel: c.in_channel,
        }
    }

    proptest! {
        #[test]
        fn explanation_matches_computation_for_every_bit(c in case()) {
            let user = user();
            let input = input(&c, &user);
            let verdicts = explain(&input);
            prop_assert_eq!(verdicts.len(), Permissions::all().iter().count());
            prop_assert_eq!(allowed(&verdicts), compute(&input));
        }

        #[test]
        fn never_more_than_all_and_deny_wins_where_it_is_the_last_word(c in case()) {
            let user = user();
            let input = input(&c, &user);
            let got = compute(&input);
            prop_assert!(Permissions::all().contains(got));
            let admin = c.roles.iter().any(|(_, p)| p.contains(Permissions::ADMINISTRATOR))
                || c.everyone.contains(Permissions::ADMINISTRATOR);
            if !c.is_owner && !admin {
                // A member-level deny in the innermost layer always holds.
                if let Some(ow) = c.layers[1].1.get(&OverwriteTarget::Member(user.clone())) {
                    prop_assert!((got & ow.deny).is_empty(), "member deny ignored");
                }
                // A role-level deny beats a role's grant when nothing closer allows the bit.
                let chan = &c.layers[1].1;
                for bit in Permissions::all().iter() {
                    let role_denies = c.roles.iter().any(|(r, _)| chan.get(&OverwriteTarget::Role(*r)).is_some_and(|o| o.deny.contains(bit)));
                    let role_allows = c.roles.iter().any(|(r, _)| chan.get(&OverwriteTarget::Role(*r)).is_some_and(|o| o.allow.contains(bit)));
                    let member_allows = chan.get(&OverwriteTarget::Member(user.clone())).is_some_and(|o| o.allow.contains(bit));
                    if role_denies && !role_allows && !member_allows {
                        prop_assert!(!got.contains(bit), "role deny of {:?} ignored", bit);
                    }
                }
            } else {
                prop_assert_eq!(got, Permissions::all());
            }
        }
    }

    #[test]
    fn timeout_keeps_only_view_and_history() {
        let user = user();
        let c = Case {
            is_owner: false,
            everyone: Permissions::DEFAULT_EVERYONE,
            roles: vec![],
            layers: vec![],
            timed_out: true,
            in_channel: true,
        };
        let got = compute(&input(&c, &user));
        assert_eq!(got, Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY);
        let why = explain(&input(&c, &user));
        let speak = why.iter().find(|v| v.permission == Permissions::SPEAK).unwrap();
        assert!(matches!(speak.reason, Reason::TimedOut { .. }));
    }
}
