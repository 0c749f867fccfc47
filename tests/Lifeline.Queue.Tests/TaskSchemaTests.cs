using System.Reflection;
using System.Text.RegularExpressions;
using Lifeline.Queue.Data;
using Lifeline.Queue.Domain;
using Lifeline.Queue.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Npgsql;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// The task row and its states as a migrated real database has them (information_schema, pg_constraint), against the three
/// other declarations: the EF Core model (migrations), <see cref="TaskRecord"/> (the reader every statement uses) and
/// <see cref="TaskState"/>/<see cref="TaskLifecycle"/>. A column, a type, a nullability or a state that drifts in any one of
/// them fails here.
/// </summary>
public sealed class TaskSchemaTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    // Columns of tasks TaskRecord does not read: the lease's length and the attempt's deadline are used inside SQL only.
    private static readonly string[] UnreadColumns = ["deadline_at", "lease_seconds"];

    // The database types a CLR type of TaskRecord is read from.
    private static readonly Dictionary<Type, string[]> ReadableAs = new()
    {
        [typeof(Guid)] = ["uuid"],
        [typeof(string)] = ["text", "jsonb"],
        [typeof(StoredError)] = ["jsonb"],
        [typeof(int)] = ["integer"],
        [typeof(long)] = ["bigint"],
        [typeof(double)] = ["double precision"],
        [typeof(bool)] = ["boolean"],
        [typeof(DateTime)] = ["timestamp with time zone"],
    };

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_check_constraints_of_the_migrated_table_name_the_states_of_TaskState_and_are_enforced()
    {
        var constraints = await ConstraintsAsync();
        var expected = new Dictionary<string, string[]>
        {
            ["ck_tasks_status"] = TaskState.All,
            ["ck_tasks_lease_iff_leased"] = TaskState.Leased,
            ["ck_tasks_leased_has_worker"] = TaskState.Leased,
            ["ck_tasks_running_started"] = [TaskState.Running],
            ["ck_tasks_not_started_before_running"] = TaskState.NotStarted,
            ["ck_tasks_ended_has_completed_at"] = TaskState.Ended,
            ["ck_tasks_dead_lettered_at"] = [TaskState.DeadLettered],
            ["ck_tasks_completed_no_error"] = [TaskState.Completed],
        };
        var onStatus = constraints.Where(c => Regex.IsMatch(c.Value, @"\bstatus\b")).ToList();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), onStatus.Select(c => c.Key).Order(StringComparer.Ordinal));
        foreach (var (name, definition) in onStatus)
        {
            Assert.True(expected[name].Order(StringComparer.Ordinal).SequenceEqual(Literals(definition).Order(StringComparer.Ordinal)),
                $"{name} names [{string.Join(",", Literals(definition))}], TaskState says [{string.Join(",", expected[name])}]: {definition}");
        }
        // Every state the table moves a task into is one the constraint allows, and no other exists.
        Assert.Equal(TaskState.All.Order(StringComparer.Ordinal), TaskLifecycle.All.SelectMany(t => t.To).Distinct().Order(StringComparer.Ordinal));

        // The EF model declares exactly the constraints the database has.
        await using (var db = Context())
        {
            var model = db.GetService<IDesignTimeModel>().Model.FindEntityType(typeof(TaskEntity))!;
            Assert.Equal(constraints.Keys.Order(StringComparer.Ordinal), model.GetCheckConstraints().Select(c => c.Name!).Order(StringComparer.Ordinal));
        }

        // Enforced: a state outside the table cannot be stored, and the task is left as it was.
        var task = await env.Queue.Client().EnqueueAsync(Spec(NewType("schema.check")));
        await using var connection = new NpgsqlConnection(env.DatabaseConnectionString);
        await connection.OpenAsync();
        await using var bad = new NpgsqlCommand("UPDATE tasks SET status = 'paused' WHERE id = @id", connection);
        bad.Parameters.AddWithValue("id", Guid.Parse(task.Id));
        var refused = await Assert.ThrowsAsync<PostgresException>(() => bad.ExecuteNonQueryAsync());
        Assert.Equal(PostgresErrorCodes.CheckViolation, refused.SqlState);
        Assert.Equal("ck_tasks_status", refused.ConstraintName);
        Assert.Equal(TaskState.Pending, await env.StatusAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_ef_model_the_reader_and_the_migrated_table_declare_the_same_task_row()
    {
        var table = await ColumnsAsync();
        Assert.NotEmpty(table);

        // EF Core: the model is the migrations' (no change waits for a migration) and matches the table column for column.
        await using (var db = Context())
        {
            Assert.False(db.Database.HasPendingModelChanges(), "the queue's EF model differs from its migrations' snapshot: add a migration");
            var store = StoreObjectIdentifier.Table("tasks");
            var entity = db.GetService<IDesignTimeModel>().Model.FindEntityType(typeof(TaskEntity))!;
            var model = entity.GetProperties().ToDictionary(p => p.GetColumnName(store)!, p => (Type: p.GetColumnType(store), Nullable: p.IsColumnNullable(store)));
            Assert.Equal(table.Keys.Order(StringComparer.Ordinal), model.Keys.Order(StringComparer.Ordinal));
            foreach (var (column, (type, nullable)) in table)
            {
                Assert.True(model[column] == (type, nullable), $"tasks.{column} is {type} {(nullable ? "NULL" : "NOT NULL")} in the database, {model[column]} in the EF model");
            }
            Assert.All(entity.GetProperties(), p => Assert.Equal(TaskRecord.ColumnOf(p.Name), p.GetColumnName(store)));
        }

        // The reader: its columns are its parameters, each a column of the table with a type it reads and the same nullability.
        var parameters = typeof(TaskRecord).GetConstructors().Single().GetParameters();
        Assert.Equal(parameters.Select(p => TaskRecord.ColumnOf(p.Name!)), TaskRecord.Columns.Split(", "));
        Assert.Equal(parameters.Length, TaskRecord.ColumnCount);
        var nullability = new NullabilityInfoContext();
        foreach (var parameter in parameters)
        {
            var column = TaskRecord.ColumnOf(parameter.Name!);
            Assert.True(table.TryGetValue(column, out var stored), $"TaskRecord reads {column}, which tasks does not have");
            var clr = Nullable.GetUnderlyingType(parameter.ParameterType) ?? parameter.ParameterType;
            var nullable = clr != parameter.ParameterType || nullability.Create(parameter).ReadState == NullabilityState.Nullable;
            Assert.True(ReadableAs.TryGetValue(clr, out var types) && types.Contains(stored.Type),
                $"TaskRecord.{parameter.Name} is {clr.Name}, tasks.{column} is {stored.Type}");
            Assert.True(nullable == stored.Nullable, $"TaskRecord.{parameter.Name} is {(nullable ? "" : "not ")}nullable, tasks.{column} is {(stored.Nullable ? "NULL" : "NOT NULL")}");
        }
        // A column added to the table is either read or named here on purpose.
        Assert.Equal(UnreadColumns, table.Keys.Except(TaskRecord.Columns.Split(", ")).Order(StringComparer.Ordinal));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_reader_takes_every_column_of_a_real_row_from_its_own_position()
    {
        var type = NewType("schema.row");
        var client = env.Queue.Client();
        var spec = WithWorkflow(Spec(type, """{"n":1}""", priority: 3, maxRetries: 2, timeoutSeconds: 30, idempotencyKey: Guid.NewGuid().ToString()), "wf-schema");
        var task = await client.EnqueueAsync(spec);
        var leased = Assert.Single(await client.LeaseAsync("schema-worker", type));
        await client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        await client.ReportProgressAsync(new ReportProgressRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Percent = 40, Message = "step 2" });

        await using var connection = new NpgsqlConnection(env.DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT {TaskRecord.Columns} FROM tasks WHERE id = @id", connection);
        command.Parameters.AddWithValue("id", Guid.Parse(task.Id));
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        var record = TaskRecord.Read(reader);

        var parameters = typeof(TaskRecord).GetConstructors().Single().GetParameters();
        var nonNull = 0;
        foreach (var parameter in parameters)
        {
            var ordinal = reader.GetOrdinal(TaskRecord.ColumnOf(parameter.Name!));
            var stored = reader.IsDBNull(ordinal) ? null : reader.GetValue(ordinal);
            var read = typeof(TaskRecord).GetProperty(parameter.Name!)!.GetValue(record);
            nonNull += stored is null ? 0 : 1;
            Assert.True(Equals(stored, read), $"TaskRecord.{parameter.Name} read {read ?? "null"}, the row's {TaskRecord.ColumnOf(parameter.Name!)} holds {stored ?? "null"}");
        }
        Assert.True(nonNull >= 25, $"only {nonNull} columns of the row were set: the comparison proves little");
        Assert.Equal(TaskState.Running, record.Status);
        Assert.Equal("step 2", record.ProgressMessage);
    }

    private QueueDbContext Context() =>
        new(new DbContextOptionsBuilder<QueueDbContext>().UseNpgsql(env.DatabaseConnectionString).Options);

    private static IEnumerable<string> Literals(string definition) =>
        Regex.Matches(definition, @"'(\w+)'").Select(m => m.Groups[1].Value).Distinct();

    private async Task<Dictionary<string, string>> ConstraintsAsync()
    {
        var constraints = new Dictionary<string, string>();
        await using var connection = new NpgsqlConnection(env.DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'tasks'::regclass AND contype = 'c'", connection);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            constraints[reader.GetString(0)] = reader.GetString(1);
        }
        return constraints;
    }

    private async Task<Dictionary<string, (string Type, bool Nullable)>> ColumnsAsync()
    {
        var columns = new Dictionary<string, (string, bool)>();
        await using var connection = new NpgsqlConnection(env.DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'tasks'
            """, connection);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            columns[reader.GetString(0)] = (reader.GetString(1), reader.GetBoolean(2));
        }
        return columns;
    }
}
