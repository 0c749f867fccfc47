using Npgsql;

namespace Lifeline.ServiceDefaults.Leadership;

/// <summary>
/// A term of a role: <see cref="Holder"/> holds <see cref="Name"/> under <see cref="Term"/> until <see cref="Lost"/>
/// fires (the term expired without renewal, another instance took over, or the service stops).
/// </summary>
public sealed record LeaderTerm(string Name, string Holder, long Term, DateTime Since, CancellationToken Lost)
{
    /// <summary>
    /// A SQL condition that is true only while this term runs: put it in the <c>WHERE</c> of a write (with
    /// <see cref="AddFenceParameters"/>) and the write changes nothing once a successor was elected or the term expired
    /// — even from a leader that was paused past its term. It share-locks the role's row until the write's transaction
    /// ends, so a successor's election waits for a fenced write in flight, and a write waits for an election in flight
    /// and then sees the new term.
    /// </summary>
    public const string Fence = """
        EXISTS (SELECT 1 FROM lifeline_leaders
                WHERE name = @leader_name AND holder = @leader_holder AND term = @leader_term AND expires_at > clock_timestamp()
                FOR SHARE)
        """;

    /// <summary>The parameters <see cref="Fence"/> uses.</summary>
    public void AddFenceParameters(NpgsqlParameterCollection parameters)
    {
        parameters.AddWithValue("leader_name", Name);
        parameters.AddWithValue("leader_holder", Holder);
        parameters.AddWithValue("leader_term", Term);
    }

    /// <summary>
    /// Whether this term still runs, checked in <paramref name="transaction"/>: when true, no successor can be elected
    /// before the transaction ends (its writes are fenced as a whole).
    /// </summary>
    public async Task<bool> HoldsAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT {Fence}", connection, transaction);
        AddFenceParameters(command.Parameters);
        return await command.ExecuteScalarAsync(ct) is true;
    }
}
