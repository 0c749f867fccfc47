using Lifeline.Queue.Domain;

namespace Lifeline.Queue.Tests.UnitTests;

/// <summary>
/// The transition table (<see cref="TaskLifecycle"/>) against the SQL the queue runs: every status change in a statement
/// is a transition of the table, made by the statement the table names, and every transition has its statement.
/// </summary>
public sealed class TaskLifecycleTests
{
    private static readonly IReadOnlyDictionary<string, string> Sql = QueueSql.Statements();

    private static readonly IReadOnlyList<QueueSql.StatusChange> Changes =
        Sql.SelectMany(s => QueueSql.StatusChanges(s.Key, s.Value)).ToList();

    private static string Show(IEnumerable<(string? From, string To)> edges) =>
        string.Join(", ", edges.OrderBy(e => e.From).ThenBy(e => e.To).Select(e => $"{e.From ?? "∅"}→{e.To}"));

    [Fact]
    public void The_reader_finds_the_status_changes_of_the_queue()
    {
        // A floor, so a broken reader (finding nothing) cannot pass the tests below.
        Assert.True(Changes.Count >= 12, $"only {Changes.Count} status changes found in {Sql.Count} statements");
        Assert.All(Changes, c => Assert.True(c.From.Length > 0 && c.To.Length > 0,
            $"{c.Statement}: an UPDATE of tasks.status must guard on the current state and name its new states (from [{string.Join(",", c.From)}] to [{string.Join(",", c.To)}]):\n{c.Text}"));
    }

    [Fact]
    public void Every_status_change_in_the_sql_is_a_transition_of_the_table_made_by_the_statement_the_table_names()
    {
        foreach (var (statement, changes) in Changes.GroupBy(c => c.Statement).Select(g => (g.Key, g.ToList())))
        {
            var claimedBy = TaskLifecycle.All.Where(t => t.Statements.Contains(statement)).ToList();
            Assert.True(claimedBy.Count > 0, $"{statement} changes tasks.status but no transition of TaskLifecycle names it");
            var inSql = changes.SelectMany(c => c.From.SelectMany(f => c.To.Select(t => ((string?)f, t)))).Where(e => e.Item1 != e.t).ToHashSet();
            var inTable = claimedBy.SelectMany(t => t.Edges).ToHashSet();
            Assert.True(inSql.SetEquals(inTable), $"{statement}: the SQL makes [{Show(inSql)}], the table says [{Show(inTable)}]");
        }
    }

    [Fact]
    public void Every_transition_of_the_table_has_its_statements()
    {
        foreach (var transition in TaskLifecycle.All)
        {
            Assert.NotEmpty(transition.Statements);
            foreach (var statement in transition.Statements)
            {
                Assert.True(Sql.TryGetValue(statement, out var text), $"transition '{transition.Name}' names {statement}, which the queue does not have");
                if (transition.From.Length == 0)
                {
                    // Creation: an INSERT of the first state.
                    Assert.Matches(@"INSERT\s+INTO\s+tasks\b", text);
                    Assert.All(transition.To, s => Assert.Contains(TaskState.Sql(s), text, StringComparison.Ordinal));
                }
                else
                {
                    var made = Changes.Where(c => c.Statement == statement).SelectMany(c => c.From.SelectMany(f => c.To.Select(t => ((string?)f, t)))).ToHashSet();
                    Assert.True(transition.Edges.All(made.Contains), $"'{transition.Name}' says {statement} makes [{Show(transition.Edges)}]; it makes [{Show(made)}]");
                }
            }
        }
    }

    [Fact]
    public void Each_transition_and_each_statement_has_one_owner()
    {
        Assert.Equal(TaskLifecycle.All.Count, TaskLifecycle.All.Select(t => t.Name).Distinct().Count());
        foreach (var statement in TaskLifecycle.All.SelectMany(t => t.Statements).Distinct())
        {
            var owners = TaskLifecycle.All.Where(t => t.Statements.Contains(statement)).Select(t => t.Owner).Distinct().ToList();
            Assert.True(owners.Count == 1, $"{statement} is made for {string.Join(" and ", owners)}");
        }
        // The decisions of the refactor: an expired lease and the deadline are the queue's, a lost holder and the retry after a timeout recovery's.
        Assert.Equal(TransitionOwner.QueueMaintenance, TaskLifecycle.LeaseExpiry.Owner);
        Assert.Equal(TransitionOwner.QueueMaintenance, TaskLifecycle.TimeOut.Owner);
        Assert.Equal(TransitionOwner.Recovery, TaskLifecycle.RecoverLostHolder.Owner);
        Assert.Equal(TransitionOwner.Recovery, TaskLifecycle.RetryTimedOut.Owner);
        Assert.DoesNotContain(TaskLifecycle.All, t => t.Owner != TransitionOwner.QueueMaintenance && t.Edges.Contains((TaskState.Running, TaskState.Timeout)));
    }

    [Fact]
    public void The_table_uses_only_task_states_and_every_state_is_reachable_from_enqueue()
    {
        var states = TaskLifecycle.All.SelectMany(t => t.From.Concat(t.To)).ToHashSet();
        Assert.Subset(TaskState.All.ToHashSet(), states);
        var reached = new HashSet<string>(TaskLifecycle.Enqueue.To);
        for (var grew = true; grew;)
        {
            grew = false;
            foreach (var (from, to) in TaskLifecycle.All.SelectMany(t => t.Edges))
            {
                if (from is not null && reached.Contains(from) && reached.Add(to))
                {
                    grew = true;
                }
            }
        }
        Assert.Equal(TaskState.All.Order(), reached.Order());
    }

    [Fact]
    public void An_ended_task_leaves_its_state_only_by_a_redrive_or_recoverys_retry_after_a_timeout()
    {
        var fromEnded = TaskLifecycle.All.Where(t => t.From.Intersect(TaskState.Ended).Any()).ToList();
        Assert.Equal(new[] { TaskLifecycle.Redrive, TaskLifecycle.RetryTimedOut }, fromEnded.OrderBy(t => t.Name, StringComparer.Ordinal));
        Assert.Equal(new[] { TaskState.DeadLettered }, TaskLifecycle.Redrive.From);
        Assert.Equal(new[] { TaskState.Timeout }, TaskLifecycle.RetryTimedOut.From);
        // Holder calls need a lease, and a lease exists exactly in the leased states.
        Assert.All(new[] { TaskLifecycle.Complete, TaskLifecycle.Fail, TaskLifecycle.Release, TaskLifecycle.LeaseExpiry, TaskLifecycle.RecoverLostHolder },
            t => Assert.Equal(TaskState.Leased, t.From));
        // Cancel is allowed in exactly the states that have not ended.
        Assert.Equal(TaskState.All.Except(TaskState.Ended).Order(), TaskLifecycle.Cancel.From.Order());
    }

    [Fact]
    public void Every_state_named_in_a_status_comparison_of_the_queues_sql_is_a_task_state()
    {
        var literals = Sql.SelectMany(s => QueueSql.StatusLiterals(s.Value).Select(l => (Statement: s.Key, Literal: l))).ToList();
        Assert.NotEmpty(literals);
        Assert.All(literals, l => Assert.True(TaskState.All.Contains(l.Literal), $"{l.Statement} compares a status with '{l.Literal}', which is no task state"));
    }

    [Fact]
    public void A_guard_is_an_sql_list_of_task_states_and_refuses_anything_else()
    {
        Assert.Equal("t.status IN ('assigned','running')", TaskLifecycle.Complete.FromGuard("t.status"));
        Assert.Equal("status = 'running'", TaskLifecycle.TimeOut.FromGuard("status"));
        Assert.Equal("@status IN ('pending','dead_lettered')", TaskLifecycle.ToGuard("@status", TaskLifecycle.RecoverLostHolder, TaskLifecycle.RetryTimedOut));
        Assert.Throws<ArgumentOutOfRangeException>(() => TaskState.Sql("Pending"));
        Assert.Throws<ArgumentOutOfRangeException>(() => TaskState.SqlList(new[] { "pending", "x'; DROP TABLE tasks; --" }));
    }
}
