# Stage: geometry (rules are added by its issue).
