using System.Runtime.ExceptionServices;
using Xunit;

namespace Lifeline.Testing;

/// <summary>
/// xunit class fixture (<c>IClassFixture&lt;T&gt;</c>) giving a test class its own PostgreSQL database on
/// the shared cluster and its own redis-server. Derive from it to add migrations or a service host
/// (<see cref="OnInitializedAsync"/> / <see cref="OnDisposingAsync"/>). Everything it created is
/// dropped or stopped in <see cref="DisposeAsync"/>, whether the tests passed or not.
/// </summary>
public class ServiceTestEnvironment : IAsyncLifetime
{
    private readonly string? _databaseNamePrefix;
    private PostgresServer? _postgres;
    private string? _databaseConnectionString;
    private RedisServer? _redis;
    private int _disposed;

    /// <summary>Database names start with <see cref="DatabaseNamePrefix"/> (by default the fixture's type name).</summary>
    public ServiceTestEnvironment()
    {
    }

    /// <summary>Database names start with <paramref name="databaseNamePrefix"/>, e.g. <c>queue</c>.</summary>
    protected ServiceTestEnvironment(string databaseNamePrefix)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(databaseNamePrefix);
        _databaseNamePrefix = databaseNamePrefix;
    }

    /// <summary>Prefix of the database name; override or pass to the constructor.</summary>
    protected virtual string DatabaseNamePrefix => _databaseNamePrefix ?? GetType().Name;

    /// <summary>The process-wide cluster (admin access, <see cref="PostgresServer.BinDirectory"/> for pg_dump…).</summary>
    public PostgresServer Postgres => _postgres ?? throw NotInitialized();

    /// <summary>Connection string of this fixture's own database.</summary>
    public string DatabaseConnectionString => _databaseConnectionString ?? throw NotInitialized();

    /// <summary>This fixture's own redis-server (<see cref="RedisServer.StopAsync"/>/<see cref="RedisServer.RestartAsync"/> simulate Redis loss).</summary>
    public RedisServer Redis => _redis ?? throw NotInitialized();

    /// <summary>Shortcut for <c>Redis.ConnectionString</c>.</summary>
    public string RedisConnectionString => Redis.ConnectionString;

    /// <summary>Runs a scalar query against this fixture's database (assertions look at the store, not just replies).</summary>
    public async Task<T> ScalarAsync<T>(string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new Npgsql.NpgsqlConnection(DatabaseConnectionString);
        await connection.OpenAsync().ConfigureAwait(false);
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }
        return (T)(await command.ExecuteScalarAsync().ConfigureAwait(false))!;
    }

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        try
        {
            _postgres = await PostgresServer.GetAsync().ConfigureAwait(false);
            var database = _postgres.CreateDatabaseAsync(DatabaseNamePrefix);
            var redis = RedisServer.StartAsync();

            // Await both before judging either, so whichever succeeded is known and gets cleaned up.
            try
            {
                await Task.WhenAll(database, redis).ConfigureAwait(false);
            }
            finally
            {
                _databaseConnectionString = database.IsCompletedSuccessfully ? database.Result : null;
                _redis = redis.IsCompletedSuccessfully ? redis.Result : null;
            }

            await OnInitializedAsync().ConfigureAwait(false);
        }
        catch
        {
            // xunit does not always dispose a fixture whose initialisation failed.
            await DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var failures = new List<Exception>();
        try
        {
            await OnDisposingAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            failures.Add(ex);
        }

        if (_databaseConnectionString is not null && _postgres is not null)
        {
            try
            {
                await _postgres.DropDatabaseAsync(_databaseConnectionString).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                failures.Add(ex);
            }
        }

        if (_redis is not null)
        {
            await _redis.DisposeAsync().ConfigureAwait(false);
        }

        if (failures.Count == 1)
        {
            ExceptionDispatchInfo.Throw(failures[0]);
        }

        if (failures.Count > 1)
        {
            throw new AggregateException("Disposing the test environment failed.", failures);
        }
    }

    /// <summary>Runs once the database and Redis exist: apply migrations, start the service under test…</summary>
    protected virtual Task OnInitializedAsync() => Task.CompletedTask;

    /// <summary>Runs before the database is dropped and Redis stopped: stop hosts, close connections…</summary>
    protected virtual Task OnDisposingAsync() => Task.CompletedTask;

    private InvalidOperationException NotInitialized() =>
        new($"{GetType().Name} is not initialised; use it as an xunit fixture or call InitializeAsync first.");
}
