namespace Lifeline.Queue.Data;

/// <summary>
/// SQL fragments that record task history in the same statement as the change itself (a data-modifying
/// CTE), so a state change and its event commit or roll back together.
/// </summary>
internal static class History
{
    /// <summary>
    /// An <c>INSERT INTO task_history … SELECT … FROM {source}</c> where <paramref name="source"/> is a
    /// CTE of changed rows with columns id, tenant_id, type, assigned_worker_id, fencing_token.
    /// </summary>
    public static string InsertFrom(string source, string eventType, string fromStatus, string toStatus,
        string message = "NULL", string details = "NULL", string worker = "assigned_worker_id", string token = "fencing_token") =>
        InsertFromExpression(source, $"'{eventType}'", fromStatus, toStatus, message, details, worker, token);

    /// <summary>As <see cref="InsertFrom"/>, with the event type given as an SQL expression over the source row.</summary>
    public static string InsertFromExpression(string source, string eventTypeSql, string fromStatus, string toStatus,
        string message = "NULL", string details = "NULL", string worker = "assigned_worker_id", string token = "fencing_token") =>
        $"""
        INSERT INTO task_history (tenant_id, task_id, task_type, event_type, from_status, to_status, worker_id, fencing_token, message, details)
        SELECT tenant_id, id, type, {eventTypeSql}, {fromStatus}, {toStatus}, {worker}, {token}, {message}, {details} FROM {source}
        """;
}
