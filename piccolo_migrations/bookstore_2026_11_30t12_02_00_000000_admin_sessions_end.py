"""An account's admin-panel sessions end when its password changes or it loses access, whoever
makes the change: the API (a password change), the admin panel, psql.

Piccolo's session check re-reads the account on every request, so deactivation already locked the
panel; but the sessions stayed, and reactivating the account revived them, and a password changed
through the API left them alone. Deleting them in a trigger covers every writer. A re-hash of an
unchanged password at login (after the argon2 settings change) ends them too: harmless, and rare.
The sessions table belongs to piccolo_api's app, migrated beside ours: the trigger skips the
delete where it does not exist.
"""

from bookstore.core.migrations import raw_sql_migration

ID = "2026-11-30T12:02:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "End an account's admin sessions when its password changes or it loses access"

FORWARDS_SQL = (
    """
    CREATE FUNCTION app_user_end_admin_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF to_regclass('sessions') IS NOT NULL THEN
            EXECUTE 'DELETE FROM sessions WHERE user_id = $1' USING NEW.id;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER app_user_end_admin_sessions AFTER UPDATE ON app_user FOR EACH ROW "
    "WHEN (NEW.password IS DISTINCT FROM OLD.password OR (OLD.active AND NOT NEW.active) "
    "OR (OLD.admin AND NOT NEW.admin)) EXECUTE FUNCTION app_user_end_admin_sessions()",
)

BACKWARDS_SQL = (
    "DROP TRIGGER app_user_end_admin_sessions ON app_user",
    "DROP FUNCTION app_user_end_admin_sessions()",
)

forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS_SQL, BACKWARDS_SQL)
