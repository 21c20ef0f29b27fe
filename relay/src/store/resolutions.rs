//! A new user's contact resolution, shared by the relays on one database (migration V5; see
//! `Relay::contact_for`): a claim that lets one relay at a time read HubSpot for a user whose
//! contact the store does not know, and create it, and notes of what HubSpot last answered
//! ("no contact has this id", "no contact has this email"), so a retry soon after skips reads
//! that would answer the same.

use super::{one_int, SqlStore, StoreResult};

/// What HubSpot last answered for a user whose contact is not stored (ms since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Misses {
    /// When a read by the unique id property last found no contact.
    pub id_at: Option<i64>,
    /// The email a read by email last found on no contact, and when.
    pub email: Option<(String, i64)>,
}

impl SqlStore {
    pub(super) async fn claim_resolution_sql(&self, sub: &str, owner: &str, now: i64, until: i64) -> StoreResult<Option<Misses>> {
        // The claim is taken when there is none, when it ran out, or when it is this relay's (a
        // request of this relay that was cancelled while holding it).
        let rows = self
            .write()
            .await?
            .query(
                "INSERT INTO contact_resolutions (sub, claimed_by, claimed_until) VALUES ($1, $2, $4)
                 ON CONFLICT (sub) DO UPDATE SET claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until
                 WHERE contact_resolutions.claimed_until <= $3 OR contact_resolutions.claimed_by = excluded.claimed_by
                 RETURNING id_missed_at, missed_email, email_missed_at",
                vec![sub.into(), owner.into(), now.into(), until.into()],
            )
            .await?;
        Ok(rows.first().map(|r| Misses { id_at: r[0].int(), email: r[1].text().zip(r[2].int()) }))
    }

    pub(super) async fn resolution_claimed_sql(&self, sub: &str, now: i64) -> StoreResult<bool> {
        let rows = self
            .read_once("SELECT COUNT(*) FROM contact_resolutions WHERE sub = $1 AND claimed_until > $2", vec![sub.into(), now.into()])
            .await?;
        Ok(one_int(&rows).unwrap_or(0) > 0)
    }

    pub(super) async fn end_resolution_sql(&self, sub: &str, owner: &str, resolved: Option<&Misses>, now: i64) -> StoreResult<()> {
        let mut c = self.write().await?;
        match resolved {
            // The contact is stored: its notes say nothing any more.
            None => c.exec("DELETE FROM contact_resolutions WHERE sub = $1", vec![sub.into()]).await?,
            Some(m) => {
                let (email, email_at) = m.email.as_ref().map(|(e, at)| (Some(e.as_str()), Some(*at))).unwrap_or((None, None));
                c.exec(
                    "UPDATE contact_resolutions SET claimed_until = $3, id_missed_at = COALESCE($4, id_missed_at),
                       missed_email = COALESCE($5, missed_email), email_missed_at = COALESCE($6, email_missed_at)
                     WHERE sub = $1 AND claimed_by = $2",
                    vec![sub.into(), owner.into(), now.into(), m.id_at.into(), email.into(), email_at.into()],
                )
                .await?
            }
        };
        Ok(())
    }
}
