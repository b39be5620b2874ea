"""One source of truth for who administers: ``admin``, with ``superuser`` only on top of it.

``admin`` is the API's ``is_admin`` and lets a user into the admin panel. ``superuser`` (Piccolo's
flag) additionally lets an administrator manage accounts there. A trigger keeps ``superuser``
false wherever ``admin`` is, for every writer: taking admin rights away (in the admin panel, in
psql) takes both, and nothing can leave a superuser who is not an administrator. The
administrators ``createsuperuser`` made before the admin panel existed become superusers, as
that command now makes them.
"""

from bookstore.core.migrations import raw_sql_migration

ID = "2026-11-30T12:01:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Administrators are superusers; superuser needs admin"

FORWARDS_SQL = (
    """
    CREATE FUNCTION app_user_superuser_needs_admin() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.superuser := NEW.superuser AND NEW.admin;
        RETURN NEW;
    END
    $$
    """,
    "CREATE TRIGGER app_user_superuser_needs_admin BEFORE INSERT OR UPDATE ON app_user "
    "FOR EACH ROW EXECUTE FUNCTION app_user_superuser_needs_admin()",
    "UPDATE app_user SET superuser = admin WHERE superuser IS DISTINCT FROM admin",
)

BACKWARDS_SQL = (
    "DROP TRIGGER app_user_superuser_needs_admin ON app_user",
    "DROP FUNCTION app_user_superuser_needs_admin()",
)

forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS_SQL, BACKWARDS_SQL)
