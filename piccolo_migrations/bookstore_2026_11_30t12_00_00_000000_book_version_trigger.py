"""Let the database, not each writer, bump a book's ``version`` (its ETag) and ``updated_at``.

The API is not the only writer: the Piccolo admin and psql change books too, and an ETag that
only the API bumped would let a client's ``If-Match`` succeed against a price an admin has since
changed. So the trigger sets both on every write: a real change gets the old version plus one and
the statement's time, a save that changes nothing keeps both; what a writer puts in
``updated_at`` is ignored.

A writer that sets ``version`` states the version it read, like ``If-Match``: anything but the
current version is refused (SQLSTATE 23514, which Piccolo admin shows as "changed since you
opened it"). The admin's edit form re-sends every column as it loaded them, so a form opened
before a sale or an API edit would otherwise put back the old stock or title. The current version
plus one is accepted as well: it is what the service's statements wrote before this migration, so
instances still running that code during a rolling deploy keep working.

"Nothing changed" is the new row equal to the old one with the new row's ``version``,
``updated_at`` and ``search_vector`` (generated after BEFORE triggers run, from compared
columns) copied in, so a column added later is compared without touching the trigger. Measured
at ~9 us of PostgreSQL CPU per updated row, against ~30 us for comparing ``to_jsonb`` of both
rows minus those keys.
"""

from bookstore.core.migrations import raw_sql_migration

ID = "2026-11-30T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Trigger bumping a book's version and updated_at on every real change, refusing stale versions"

FORWARDS_SQL = (
    """\
CREATE FUNCTION book_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unchanged book := OLD;
BEGIN
    IF NEW.version <> OLD.version AND NEW.version <> OLD.version + 1 THEN
        RAISE EXCEPTION 'book % changed since it was read: it is at version %, not %; read it again',
            OLD.id, OLD.version, NEW.version
            USING ERRCODE = 'check_violation';
    END IF;
    unchanged.version := NEW.version;
    unchanged.updated_at := NEW.updated_at;
    unchanged.search_vector := NEW.search_vector;
    IF NEW IS NOT DISTINCT FROM unchanged THEN
        NEW.version := OLD.version;
        NEW.updated_at := OLD.updated_at;
    ELSE
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$""",
    "CREATE TRIGGER book_bump_version BEFORE UPDATE ON book FOR EACH ROW EXECUTE FUNCTION book_bump_version()",
)

BACKWARDS_SQL = ("DROP TRIGGER book_bump_version ON book", "DROP FUNCTION book_bump_version()")

forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS_SQL, BACKWARDS_SQL)
