namespace Lifeline.Recovery.Notifications;

// TEMPORARY scaffold while this area is being built in parallel; replaced by the area's own registration.
internal static class NotificationsRegistration
{
    public static IHostApplicationBuilder AddNotifications(this IHostApplicationBuilder builder) => builder;
}
