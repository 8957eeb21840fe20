def test_migrated_schema_has_registry(conn):
    metrics = [r[0] for r in conn.execute("SELECT metric FROM telemetry.metrics ORDER BY metric_id")]
    assert metrics == ["co2", "temperature", "humidity", "occupancy"]
