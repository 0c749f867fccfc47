using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Lifeline.Worker;

/// <summary>Registers a <see cref="LifelineWorker"/> and its task handlers with a host.</summary>
public static class LifelineWorkerServiceCollectionExtensions
{
    /// <summary>
    /// Adds the worker as a hosted service (and as a singleton, to read its <see cref="LifelineWorker.Statistics"/>),
    /// with options validated at start. Add handlers with the returned builder.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="configure">Sets the options, e.g. from the command line or a credentials file.</param>
    /// <returns>A builder to add task handlers with.</returns>
    public static LifelineWorkerBuilder AddLifelineWorker(this IServiceCollection services, Action<LifelineWorkerOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<LifelineWorkerOptions>().Configure(configure).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<LifelineWorkerOptions>, LifelineWorkerOptionsValidator>());
        services.TryAddSingleton<LifelineWorker>();
        services.AddHostedService(provider => provider.GetRequiredService<LifelineWorker>());
        return new LifelineWorkerBuilder(services);
    }
}

/// <summary>Adds task handlers to a <see cref="LifelineWorker"/>.</summary>
public sealed class LifelineWorkerBuilder
{
    internal LifelineWorkerBuilder(IServiceCollection services) => Services = services;

    /// <summary>The host's services.</summary>
    public IServiceCollection Services { get; }

    /// <summary>Adds a handler class (a singleton, created by dependency injection).</summary>
    /// <typeparam name="THandler">The handler; its <see cref="ITaskHandler.TaskType"/> becomes a capability of the worker.</typeparam>
    /// <returns>This builder.</returns>
    public LifelineWorkerBuilder AddTaskHandler<THandler>()
        where THandler : class, ITaskHandler
    {
        Services.AddSingleton<ITaskHandler, THandler>();
        return this;
    }

    /// <summary>Adds a handler given as a delegate.</summary>
    /// <param name="taskType">The task type it runs.</param>
    /// <param name="handle">Runs one task and returns its result as JSON text (or null); see <see cref="ITaskHandler"/>.</param>
    /// <returns>This builder.</returns>
    public LifelineWorkerBuilder AddTaskHandler(string taskType, Func<TaskContext, CancellationToken, Task<string?>> handle)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(taskType);
        ArgumentNullException.ThrowIfNull(handle);
        Services.AddSingleton<ITaskHandler>(new DelegateTaskHandler(taskType, handle));
        return this;
    }

    private sealed class DelegateTaskHandler(string taskType, Func<TaskContext, CancellationToken, Task<string?>> handle) : ITaskHandler
    {
        public string TaskType { get; } = taskType;

        public Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken) => handle(context, cancellationToken);
    }
}
